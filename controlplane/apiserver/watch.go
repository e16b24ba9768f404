package apiserver

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/petrel-project/petrel/controlplane/registry/generic"
)

// BookmarkInterval is how often a watch that allows bookmarks gets one.
var BookmarkInterval = 10 * time.Second

func (s *Server) watch(w http.ResponseWriter, r *http.Request, req *request) {
	opts, err := listOptions(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	choice, ok := negotiateFor(r, req, allowTable)
	if !ok || choice.info.StreamSerializer == nil {
		s.writeError(w, r, newNotAcceptable("watch is served as application/json and application/vnd.kubernetes.protobuf"))
		return
	}
	wopts := generic.WatchOptions{AllowBookmarks: choice.as == "", BookmarkInterval: BookmarkInterval}
	timeout := time.Duration(30+time.Now().UnixNano()%30) * time.Minute
	if opts.TimeoutSeconds != nil && *opts.TimeoutSeconds > 0 {
		timeout = time.Duration(*opts.TimeoutSeconds) * time.Second
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()

	framer := choice.info.StreamSerializer.Framer
	contentType := choice.contentType
	if choice.contentType == "application/vnd.kubernetes.protobuf" {
		contentType += ";stream=watch"
	}
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Transfer-Encoding", "chunked")

	watcher, err := req.ep.store.Watch(ctx, req.namespace, opts, wopts)
	if err != nil {
		if apierrors.IsResourceExpired(err) || apierrors.IsGone(err) {
			// Like Kubernetes' watch cache: a 200 stream whose one event is the error.
			w.WriteHeader(http.StatusOK)
			st := err.(apierrors.APIStatus).Status()
			st.TypeMeta = metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}
			newWatchEncoder(framer.NewFrameWriter(w), choice).send(watch.Error, &st)
			return
		}
		s.writeError(w, r, err)
		return
	}
	defer watcher.Stop()
	s.metrics.watchers.Inc()
	defer s.metrics.watchers.Dec()
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	if flusher != nil {
		flusher.Flush()
	}
	enc := newWatchEncoder(framer.NewFrameWriter(w), choice)
	ch := watcher.ResultChan()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-ch:
			if !ok {
				return
			}
			obj := ev.Object
			if choice.as == "Table" && ev.Type != watch.Bookmark && ev.Type != watch.Error {
				t := s.table(r, req.ep.res, []runtime.Object{obj})
				t.ResourceVersion = accessor(obj).GetResourceVersion()
				obj = t
			} else if choice.as == "PartialObjectMetadata" && ev.Type != watch.Error {
				obj = partial(obj, "meta.k8s.io/v1")
			}
			if !enc.send(ev.Type, obj) {
				return
			}
			if flusher != nil && len(ch) == 0 {
				flusher.Flush()
			}
			s.metrics.watchEvents.Inc()
		}
	}
}

// watchEncoder writes one watch stream's events, reusing its buffers: each
// event used to cost two fresh buffers the size of its object (the object's
// encoding and the WatchEvent around it), in the scheduler benchmark the
// largest source of garbage after the objects themselves.
type watchEncoder struct {
	frames   io.Writer
	objects  runtime.Encoder
	envelope runtime.Encoder
	obj      bytes.Buffer
	event    bytes.Buffer
	alloc    runtime.Allocator
}

func newWatchEncoder(frames io.Writer, choice mediaChoice) *watchEncoder {
	return &watchEncoder{frames: frames, objects: choice.info.Serializer, envelope: choice.info.StreamSerializer.Serializer}
}

// encode writes obj into buf; protobuf encodes through the stream's
// allocator, whose buffer the next event reuses (Encode copies out of it).
func (e *watchEncoder) encode(enc runtime.Encoder, obj runtime.Object, buf *bytes.Buffer) error {
	buf.Reset()
	if ea, ok := enc.(runtime.EncoderWithAllocator); ok {
		return ea.EncodeWithAllocator(obj, buf, &e.alloc)
	}
	return enc.Encode(obj, buf)
}

// send writes one event as a frame; false when the stream is broken.
func (e *watchEncoder) send(typ watch.EventType, obj runtime.Object) bool {
	setKind(obj)
	if err := e.encode(e.objects, obj, &e.obj); err != nil {
		return false
	}
	ev := &metav1.WatchEvent{Type: string(typ), Object: runtime.RawExtension{Raw: e.obj.Bytes()}}
	if err := e.encode(e.envelope, ev, &e.event); err != nil {
		return false
	}
	_, err := e.frames.Write(e.event.Bytes())
	return err == nil
}
