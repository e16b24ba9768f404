package apiserver

import (
	"bytes"
	"context"
	"net/http"
	"strconv"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/streaming"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/petrel-project/petrel/controlplane/storage"
)

// BookmarkInterval is how often a watch that allows bookmarks gets one.
var BookmarkInterval = 10 * time.Second

func (s *Server) watch(w http.ResponseWriter, r *http.Request, req *request) {
	opts, pred, err := s.listOptions(r, req)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	choice, ok := negotiate(r, allowTable)
	if !ok || choice.info.StreamSerializer == nil {
		s.writeError(w, r, newNotAcceptable("watch is served as application/json and application/vnd.kubernetes.protobuf"))
		return
	}
	wopts := storage.WatchOptions{
		Prefix:           req.ep.store.NamespacePrefix(req.namespace),
		Predicate:        pred,
		AllowBookmarks:   opts.AllowWatchBookmarks && choice.as == "",
		BookmarkInterval: BookmarkInterval,
	}
	switch opts.ResourceVersion {
	case "", "0":
		wopts.InitialEvents = true
	default:
		rv, err := strconv.ParseInt(opts.ResourceVersion, 10, 64)
		if err != nil || rv < 0 {
			s.writeError(w, r, apierrors.NewBadRequest("invalid resourceVersion "+strconv.Quote(opts.ResourceVersion)))
			return
		}
		wopts.ResourceVersion = rv
	}
	if opts.SendInitialEvents != nil {
		if opts.ResourceVersionMatch != metav1.ResourceVersionMatchNotOlderThan || !opts.AllowWatchBookmarks {
			s.writeError(w, r, apierrors.NewInvalid(metav1.SchemeGroupVersion.WithKind("ListOptions").GroupKind(), "",
				field.ErrorList{field.Required(field.NewPath("resourceVersionMatch"), "sendInitialEvents requires resourceVersionMatch=NotOlderThan and allowWatchBookmarks=true")}))
			return
		}
		wopts.InitialEvents = *opts.SendInitialEvents
		wopts.InitialEventsEndBookmark = *opts.SendInitialEvents
		if *opts.SendInitialEvents && wopts.ResourceVersion > 0 {
			// Initial events "not older than" rv: the current state is.
			wopts.ResourceVersion = 0
		}
	}
	if opts.ResourceVersion == "" && opts.SendInitialEvents == nil {
		wopts.InitialEvents = true
	}
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

	watcher, err := req.ep.store.Watch(ctx, wopts)
	if err != nil {
		if apierrors.IsResourceExpired(err) || apierrors.IsGone(err) {
			// Like Kubernetes' watch cache: a 200 stream whose one event is the error.
			w.WriteHeader(http.StatusOK)
			enc := streaming.NewEncoder(framer.NewFrameWriter(w), choice.info.StreamSerializer.Serializer)
			st := err.(apierrors.APIStatus).Status()
			st.TypeMeta = metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}
			s.sendEvent(enc, choice, watch.Error, &st)
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
	enc := streaming.NewEncoder(framer.NewFrameWriter(w), choice.info.StreamSerializer.Serializer)
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
			if !s.sendEvent(enc, choice, ev.Type, obj) {
				return
			}
			if flusher != nil && len(ch) == 0 {
				flusher.Flush()
			}
			s.metrics.watchEvents.Inc()
		}
	}
}

func (s *Server) sendEvent(enc streaming.Encoder, choice mediaChoice, typ watch.EventType, obj runtime.Object) bool {
	setKind(obj)
	var buf bytes.Buffer
	if err := choice.info.Serializer.Encode(obj, &buf); err != nil {
		return false
	}
	ev := &metav1.WatchEvent{Type: string(typ), Object: runtime.RawExtension{Raw: buf.Bytes()}}
	return enc.Encode(ev) == nil
}
