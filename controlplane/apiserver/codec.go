package apiserver

import (
	"fmt"
	apiregistrationv1 "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"
	"mime"
	"net/http"
	"strings"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"

	apidiscoveryv2 "k8s.io/api/apidiscovery/v2"
	apidiscoveryv2beta1 "k8s.io/api/apidiscovery/v2beta1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1beta1 "k8s.io/apimachinery/pkg/apis/meta/v1beta1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
)

// Scheme knows every type the API server reads and writes.
var Scheme = runtime.NewScheme()

// Codecs are the serializers for Scheme.
var Codecs serializer.CodecFactory

// ParameterCodec decodes query parameters into option structs.
var ParameterCodec runtime.ParameterCodec

var strictJSON, strictYAML runtime.Serializer

// mediaTypes are Codecs' serializers, listed once: the list is asked for on
// every request.
var mediaTypes []runtime.SerializerInfo

// jsonInfo is the JSON serializer, the answer when nothing else fits.
var jsonInfo runtime.SerializerInfo

func init() {
	utilRuntimeMust(clientgoscheme.AddToScheme(Scheme))
	utilRuntimeMust(metav1.AddMetaToScheme(Scheme))
	utilRuntimeMust(metav1beta1.AddMetaToScheme(Scheme))
	utilRuntimeMust(apidiscoveryv2.AddToScheme(Scheme))
	utilRuntimeMust(apidiscoveryv2beta1.AddToScheme(Scheme))
	utilRuntimeMust(apiextensionsv1.AddToScheme(Scheme))
	utilRuntimeMust(apiregistrationv1.AddToScheme(Scheme))
	addConversions()
	metav1.AddToGroupVersion(Scheme, schema.GroupVersion{Version: "v1"})
	// Clients send option bodies as meta.k8s.io/v1 too.
	Scheme.AddKnownTypes(metav1.SchemeGroupVersion, &metav1.DeleteOptions{}, &metav1.CreateOptions{}, &metav1.UpdateOptions{}, &metav1.PatchOptions{})
	Codecs = serializer.NewCodecFactory(Scheme)
	ParameterCodec = runtime.NewParameterCodec(Scheme)
	mediaTypes = Codecs.SupportedMediaTypes()
	jsonInfo, _ = runtime.SerializerInfoForMediaType(mediaTypes, "application/json")
	strictJSON = json.NewSerializerWithOptions(json.DefaultMetaFactory, Scheme, Scheme, json.SerializerOptions{Strict: true})
	strictYAML = json.NewSerializerWithOptions(json.DefaultMetaFactory, Scheme, Scheme, json.SerializerOptions{Yaml: true, Strict: true})
}

func utilRuntimeMust(err error) {
	if err != nil {
		panic(err)
	}
}

// mediaChoice is what a client asked for in its Accept header.
type mediaChoice struct {
	info runtime.SerializerInfo
	// as is the kind asked for with ;as= (Table, PartialObjectMetadata,
	// APIGroupDiscoveryList), with its group and version.
	as, asGroup, asVersion string
	contentType            string
}

// negotiate picks the response encoding from the Accept header, in the
// client's order of preference. allowAs lists the kinds this endpoint can
// render on request (besides the object itself).
func negotiate(r *http.Request, allowAs func(as, group, version string) bool) (mediaChoice, bool) {
	return negotiateMedia(r, allowAs, false)
}

// negotiateFor negotiates a resource's response: custom resources have no
// protobuf encoding, so a client that also takes JSON gets JSON.
func negotiateFor(r *http.Request, req *request, allowAs func(as, group, version string) bool) (mediaChoice, bool) {
	return negotiateMedia(r, allowAs, req.ep.res.Custom != nil)
}

func negotiateMedia(r *http.Request, allowAs func(as, group, version string) bool, noProtobuf bool) (mediaChoice, bool) {
	accept := r.Header.Get("Accept")
	if accept == "" {
		accept = "application/json"
	}
	for _, part := range strings.Split(accept, ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		if mt == "*/*" || mt == "application/*" {
			mt = "application/json"
		}
		info, ok := runtime.SerializerInfoForMediaType(mediaTypes, mt)
		if !ok || (noProtobuf && mt == runtime.ContentTypeProtobuf) {
			continue
		}
		c := mediaChoice{info: info, as: params["as"], asGroup: params["g"], asVersion: params["v"], contentType: mt}
		if c.as != "" && (allowAs == nil || !allowAs(c.as, c.asGroup, c.asVersion)) {
			continue
		}
		return c, true
	}
	return mediaChoice{}, false
}

// decoderFor returns the decoder for a request body's Content-Type; strict
// decoders report unknown and duplicate fields.
func decoderFor(contentType string, strict bool) (runtime.Decoder, string, error) {
	if contentType == "" {
		contentType = "application/json"
	}
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return nil, "", fmt.Errorf("invalid Content-Type %q", contentType)
	}
	switch mt {
	case "application/json":
		if strict {
			return strictJSON, mt, nil
		}
	case "application/yaml":
		if strict {
			return strictYAML, mt, nil
		}
	}
	info, ok := runtime.SerializerInfoForMediaType(mediaTypes, mt)
	if !ok {
		return nil, mt, errUnsupportedMediaType
	}
	return info.Serializer, mt, nil
}

var errUnsupportedMediaType = fmt.Errorf("unsupported media type")
