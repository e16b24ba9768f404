package audit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net"
	"net/http"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// maxResponse bounds the response body kept for a RequestResponse event; a
// larger one (a big list) is logged without its object.
const maxResponse = 4 << 20

// maxRequest bounds the request body kept (the API server refuses larger
// ones anyway).
const maxRequest = 3 << 20

// Writer wraps a request's ResponseWriter for its record: the code, a
// watch's ResponseStarted, the body at RequestResponse level, upgrades
// (Hijack) and streaming (Flush, Unwrap) passed through.
type Writer struct {
	http.ResponseWriter
	rec         *Record
	long        bool
	code        int
	wroteHeader bool
	status      *metav1.Status
	reqBody     *bytes.Buffer
	reqType     string
	respBody    *bytes.Buffer
	respOver    bool
	// protobuf decodes a protobuf request body to JSON; nil leaves such
	// bodies out.
	protobuf func([]byte) ([]byte, error)
}

// Wrap wraps w and r's body for rec; long marks a watch (its response is
// not kept). protobuf turns a protobuf body into JSON (nil: such bodies
// are left out).
func Wrap(w http.ResponseWriter, r *http.Request, rec *Record, long bool, protobuf func([]byte) ([]byte, error)) *Writer {
	aw := &Writer{ResponseWriter: w, rec: rec, long: long, protobuf: protobuf}
	if rec.WantsRequest() && r.Body != nil && r.Body != http.NoBody {
		aw.reqBody = &bytes.Buffer{}
		aw.reqType = r.Header.Get("Content-Type")
		r.Body = teeBody{ReadCloser: r.Body, copy: aw.reqBody}
	}
	if rec.WantsResponse() && !long {
		aw.respBody = &bytes.Buffer{}
	}
	return aw
}

// Record is the record the writer reports to.
func (w *Writer) Record() *Record { return w.rec }

// WriteHeader notes the code.
func (w *Writer) WriteHeader(code int) {
	if !w.wroteHeader {
		w.wroteHeader, w.code = true, code
		if w.long {
			w.rec.ResponseStarted(code)
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

// Write keeps the body when the level asks for it.
func (w *Writer) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.respBody != nil && !w.respOver {
		if w.respBody.Len()+len(p) > maxResponse {
			w.respOver, w.respBody = true, nil
		} else {
			w.respBody.Write(p)
		}
	}
	return w.ResponseWriter.Write(p)
}

// Flush keeps watches streaming through the wrapper.
func (w *Writer) Flush() {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Hijack hands the connection to an upgrade (exec, port-forward).
func (w *Writer) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	h, ok := w.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("the connection cannot be taken over")
	}
	if !w.wroteHeader {
		w.wroteHeader, w.code = true, http.StatusSwitchingProtocols
	}
	return h.Hijack()
}

// Unwrap lets http.ResponseController reach the connection.
func (w *Writer) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// NoteStatus records the Status an error answers, for the event's
// responseStatus (message and reason, not only the code).
func (w *Writer) NoteStatus(st *metav1.Status) {
	cp := *st
	cp.TypeMeta = metav1.TypeMeta{}
	w.status = &cp
}

// Finish emits the record's last stage.
func (w *Writer) Finish(panicked bool) {
	code := w.code
	if !w.wroteHeader {
		code = http.StatusOK
	}
	if panicked {
		code = http.StatusInternalServerError
	}
	if w.reqBody != nil {
		if js := w.requestJSON(); js != nil {
			w.rec.SetRequestObject(js)
		}
	}
	var resp []byte
	if w.respBody != nil && isJSON(w.Header().Get("Content-Type")) && json.Valid(w.respBody.Bytes()) {
		resp = bytes.TrimSpace(w.respBody.Bytes())
	}
	if w.respOver {
		w.rec.Annotate("audit.petrel.io/response-object", "omitted: larger than 4 MiB")
	}
	w.rec.Finish(code, w.status, resp, panicked)
}

// requestJSON turns the request body into the JSON an event holds: JSON
// and patches as sent, YAML converted, protobuf decoded; nil when it
// cannot be (the event then has no request object, rather than a line
// that is not JSON).
func (w *Writer) requestJSON() []byte {
	body := bytes.TrimSpace(w.reqBody.Bytes())
	if len(body) == 0 {
		return nil
	}
	mt, _, _ := mime.ParseMediaType(w.reqType)
	switch {
	case mt == "" || isJSON(mt):
		if json.Valid(body) {
			return body
		}
	case strings.Contains(mt, "yaml"):
		if js, err := yaml.YAMLToJSON(body); err == nil && json.Valid(js) {
			return js
		}
	case mt == "application/vnd.kubernetes.protobuf" && w.protobuf != nil:
		if js, err := w.protobuf(body); err == nil && json.Valid(js) {
			return js
		}
	}
	return nil
}

func isJSON(contentType string) bool {
	mt, _, _ := mime.ParseMediaType(contentType)
	return mt == "application/json" || strings.HasSuffix(mt, "+json")
}

// teeBody copies what the handler reads of a request body.
type teeBody struct {
	io.ReadCloser
	copy *bytes.Buffer
}

func (t teeBody) Read(p []byte) (int, error) {
	n, err := t.ReadCloser.Read(p)
	if n > 0 && t.copy.Len() < maxRequest {
		t.copy.Write(p[:n])
	}
	return n, err
}

// SourceIPs are the client's address and, before it, what proxies in
// X-Forwarded-For say, as Kubernetes records them.
func SourceIPs(r *http.Request) []string {
	var ips []string
	for _, h := range r.Header.Values("X-Forwarded-For") {
		for _, ip := range strings.Split(h, ",") {
			if ip = strings.TrimSpace(ip); net.ParseIP(ip) != nil {
				ips = append(ips, ip)
			}
		}
	}
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		ips = append(ips, host)
	}
	return ips
}
