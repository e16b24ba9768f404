package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"reflect"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/streaming/pkg/httpstream/wsstream"

	"github.com/petrel-project/petrel/controlplane/admission"
)

// ServeNode serves pods/log, exec, attach and portforward by passing the
// request (and, for the streaming ones, the upgraded connection) to the
// node server of the pod's node, as the Kubernetes API server does with
// kubelets.
func (px *Proxy) ServeNode(w http.ResponseWriter, r *http.Request, req *Request) {
	if px.NodeTransport == nil {
		px.WriteError(w, r, apierrors.NewServiceUnavailable("pods/"+req.Subresource+" needs a connection to nodes, which this API server is not configured with"))
		return
	}
	ctx, cancel := px.Context(r)
	defer cancel()
	obj, err := req.Store.Get(ctx, req.Namespace, req.Name)
	if err != nil {
		px.WriteError(w, r, err)
		return
	}
	pod := obj.(*corev1.Pod)
	q := r.URL.Query()
	if err := px.admitConnect(ctx, req, q); err != nil {
		px.WriteError(w, r, err)
		return
	}
	var target string
	switch req.Subresource {
	case "portforward":
		target = fmt.Sprintf("/portForward/%s/%s", pod.Namespace, pod.Name)
	default:
		container, err := podContainer(pod, q.Get("container"))
		if err != nil {
			px.WriteError(w, r, err)
			return
		}
		op := map[string]string{"log": "containerLogs", "exec": "exec", "attach": "attach"}[req.Subresource]
		target = fmt.Sprintf("/%s/%s/%s/%s", op, pod.Namespace, pod.Name, container)
	}
	if pod.Spec.NodeName == "" {
		px.WriteError(w, r, apierrors.NewBadRequest(fmt.Sprintf("pod %s does not have a host assigned", pod.Name)))
		return
	}
	nobj, err := px.Registry.Store(corev1.SchemeGroupVersion.WithResource("nodes")).Get(ctx, "", pod.Spec.NodeName)
	if err != nil {
		px.WriteError(w, r, err)
		return
	}
	host, err := NodeServer(nobj.(*corev1.Node))
	if err != nil {
		px.WriteError(w, r, err)
		return
	}
	u := &url.URL{Scheme: "https", Host: host, Path: target, RawQuery: nodeQuery(req.Subresource, q).Encode()}
	if req.Subresource == "log" && wsstream.IsWebSocketRequest(r) {
		px.logOverWebSocket(w, r, u, pod.Spec.NodeName)
		return
	}
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL = u
			pr.Out.Host = host
			// The node trusts its client certificate, not the user's.
			pr.Out.Header.Del("Authorization")
		},
		Transport:     px.NodeTransport,
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			px.WriteError(w, r, apierrors.NewServiceUnavailable(fmt.Sprintf("node %s: %v", pod.Spec.NodeName, err)))
		},
	}
	proxy.ServeHTTP(w, r)
}

// logOverWebSocket serves pods/log to a WebSocket client, as Kubernetes'
// API server streams any resource: the log is read from the node as plain
// HTTP and sent as WebSocket messages (binary.k8s.io, or base64 for
// base64.binary.k8s.io).
func (px *Proxy) logOverWebSocket(w http.ResponseWriter, r *http.Request, u *url.URL, node string) {
	// Hijacking the client connection ends the request's context, and the
	// node's response is read after that: the stream ends when the client
	// goes or the log does.
	ctx, cancel := context.WithCancel(context.WithoutCancel(r.Context()))
	defer cancel()
	out, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		px.WriteError(w, r, apierrors.NewInternalError(err))
		return
	}
	resp, err := (&http.Client{Transport: px.NodeTransport}).Do(out)
	if err != nil {
		px.WriteError(w, r, apierrors.NewServiceUnavailable(fmt.Sprintf("node %s: %v", node, err)))
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		px.WriteError(w, r, apierrors.NewGenericServerResponse(resp.StatusCode, "get", corev1.Resource("pods"), "", strings.TrimSpace(string(body)), 0, false))
		return
	}
	// The WebSocket server takes the connection over through http.Hijacker,
	// which the server's own response wrappers reach only by Unwrap.
	hw := hijackableWriter{ResponseWriter: w, rc: http.NewResponseController(w)}
	// Through a pipe: the WebSocket copier drops the bytes of a Read that
	// also returns io.EOF, which an HTTP body does for its last chunk; a
	// pipe never returns both at once.
	pr, pw := io.Pipe()
	go func() {
		_, err := io.Copy(pw, resp.Body)
		pw.CloseWithError(err)
	}()
	defer pr.Close()
	if err := wsstream.NewReader(pr, true, wsstream.NewDefaultReaderProtocols()).Copy(hw, r); err != nil {
		slog.Debug("apiserver: log over WebSocket ended", "err", err)
	}
}

// hijackableWriter is a ResponseWriter whose Hijack finds the connection
// through any wrappers, as http.ResponseController does.
type hijackableWriter struct {
	http.ResponseWriter
	rc *http.ResponseController
}

// Hijack takes the connection over.
func (h hijackableWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) { return h.rc.Hijack() }

// podContainer is the container a request names, or the pod's only one.
func podContainer(pod *corev1.Pod, name string) (string, error) {
	if name == "" {
		if d := pod.Annotations["kubectl.kubernetes.io/default-container"]; d != "" {
			name = d
		} else if len(pod.Spec.Containers) == 1 {
			return pod.Spec.Containers[0].Name, nil
		} else {
			var names []string
			for _, c := range pod.Spec.Containers {
				names = append(names, c.Name)
			}
			return "", apierrors.NewBadRequest(fmt.Sprintf("a container name must be specified for pod %s, choose one of: [%s]", pod.Name, strings.Join(names, " ")))
		}
	}
	for _, list := range [][]corev1.Container{pod.Spec.Containers, pod.Spec.InitContainers} {
		for _, c := range list {
			if c.Name == name {
				return name, nil
			}
		}
	}
	// kubectl debug attaches to the ephemeral container it added.
	for _, c := range pod.Spec.EphemeralContainers {
		if c.Name == name {
			return name, nil
		}
	}
	return "", apierrors.NewBadRequest(fmt.Sprintf("container %s is not valid for pod %s", name, pod.Name))
}

// NodeServer is the address of a node's server: its InternalIP and the
// port it reports. The built-in metrics API asks nodes there too.
func NodeServer(n *corev1.Node) (string, error) {
	port := int(n.Status.DaemonEndpoints.KubeletEndpoint.Port)
	if port == 0 {
		return "", apierrors.NewServiceUnavailable(fmt.Sprintf("node %s runs no node server (is it a simulated node, or a node without --run-pods?)", n.Name))
	}
	for _, t := range []corev1.NodeAddressType{corev1.NodeInternalIP, corev1.NodeExternalIP, corev1.NodeHostName} {
		for _, a := range n.Status.Addresses {
			if a.Type == t {
				return net.JoinHostPort(a.Address, strconv.Itoa(port)), nil
			}
		}
	}
	return "", apierrors.NewServiceUnavailable(fmt.Sprintf("node %s reports no address", n.Name))
}

// nodeQuery turns the API's options into the node server's query, as the
// Kubernetes API server does for kubelets (exec's stdin becomes input, and
// so on).
func nodeQuery(sub string, q url.Values) url.Values {
	out := url.Values{}
	switch sub {
	case "log":
		for _, k := range []string{"follow", "previous", "timestamps", "tailLines", "sinceSeconds", "sinceTime", "limitBytes"} {
			if v := q.Get(k); v != "" {
				out.Set(k, v)
			}
		}
	case "exec", "attach":
		for api, node := range map[string]string{"stdin": "input", "stdout": "output", "stderr": "error", "tty": "tty"} {
			if isTrue(q.Get(api)) {
				out.Set(node, "1")
			}
		}
		for _, c := range q["command"] {
			out.Add("command", c)
		}
	case "portforward":
		for _, p := range q["ports"] {
			out.Add("port", p)
		}
	}
	return out
}

// isTrue parses a boolean query parameter as Kubernetes does
// (strconv.ParseBool), as the API server's own copy does.
func isTrue(v string) bool {
	b, err := strconv.ParseBool(v)
	return err == nil && b
}

// connectOptions are the request's options as the object of a CONNECT
// (PodExecOptions, PodAttachOptions, PodPortForwardOptions), read from the
// query as Kubernetes' query parameter conversions read them; nil for a
// subresource that is not a CONNECT (logs are reads).
func connectOptions(sub string, q url.Values) runtime.Object {
	flag := func(k string) bool { b, _ := strconv.ParseBool(q.Get(k)); return b }
	switch sub {
	case "exec":
		return &corev1.PodExecOptions{Container: q.Get("container"), Command: q["command"],
			Stdin: flag("stdin"), Stdout: flag("stdout"), Stderr: flag("stderr"), TTY: flag("tty")}
	case "attach":
		return &corev1.PodAttachOptions{Container: q.Get("container"),
			Stdin: flag("stdin"), Stdout: flag("stdout"), Stderr: flag("stderr"), TTY: flag("tty")}
	case "portforward":
		o := &corev1.PodPortForwardOptions{}
		for _, p := range q["ports"] {
			for _, f := range strings.Split(p, ",") {
				if n, err := strconv.ParseInt(strings.TrimSpace(f), 10, 32); err == nil {
					o.Ports = append(o.Ports, int32(n))
				}
			}
		}
		return o
	}
	return nil
}

// admitConnect runs admission for exec, attach and port-forward as
// Kubernetes does: a CONNECT of the subresource whose object is the
// request's options, so that webhooks and policies may refuse it.
func (px *Proxy) admitConnect(ctx context.Context, req *Request, q url.Values) error {
	opts := connectOptions(req.Subresource, q)
	if opts == nil || px.Registry == nil {
		return nil
	}
	kind := corev1.SchemeGroupVersion.WithKind(reflect.TypeOf(opts).Elem().Name())
	opts.GetObjectKind().SetGroupVersionKind(kind)
	return px.Registry.Admit(ctx, &admission.Attributes{Operation: admission.Connect, Resource: req.Resource.GVR,
		Subresource: req.Subresource, Kind: kind, Namespace: req.Namespace, Name: req.Name, Object: opts})
}
