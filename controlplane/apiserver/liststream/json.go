package liststream

import (
	"bufio"
	"net/http"
	goruntime "runtime"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/petrel-project/petrel/controlplane/registry/generic"
)

// ItemsMarker is what an empty list's JSON envelope holds in place of its
// items; JSON splices the items in there.
const ItemsMarker = `"items":null`

// JSON writes a list from its JSON envelope (at: where ItemsMarker is in
// it) and the cached items' JSON, copied as they are. An error is returned
// before anything is written, so that it can still be the answer.
func JSON(w http.ResponseWriter, envelope []byte, at int, result *generic.ListResult) error {
	// Every item's JSON is fetched (encoded if the cache has not yet) before
	// the status line, so that an encoding error can still be the answer.
	if err := encodeItems(len(result.Items), result.ItemJSON); err != nil {
		return err
	}
	bw, release := startListResponse(w, "application/json")
	defer release()
	_, _ = bw.Write(envelope[:at])
	_, _ = bw.WriteString(`"items":[`)
	for n := range result.Items {
		if n > 0 {
			_ = bw.WriteByte(',')
		}
		data, _ := result.ItemJSON(n)
		_, _ = bw.Write(data)
	}
	_ = bw.WriteByte(']')
	_, _ = bw.Write(envelope[at+len(ItemsMarker):])
	_ = bw.WriteByte('\n')
	_ = bw.Flush()
	return nil
}

// encodeItems makes sure every item of a list has its encoding (item: its
// JSON or protobuf) in the watch cache. Items changed since the last read
// are encoded again, about 35 µs for a pod as JSON: a list of thousands just
// after they changed is split across the cores.
func encodeItems(n int, item func(i int) ([]byte, error)) error {
	workers := goruntime.GOMAXPROCS(0)
	if n < 512 || workers == 1 {
		for i := range n {
			if _, err := item(i); err != nil {
				return err
			}
		}
		return nil
	}
	var g errgroup.Group
	chunk := (n + workers - 1) / workers
	for start := 0; start < n; start += chunk {
		end := min(start+chunk, n)
		g.Go(func() error {
			for i := start; i < end; i++ {
				if _, err := item(i); err != nil {
					return err
				}
			}
			return nil
		})
	}
	return g.Wait()
}

// startListResponse writes a list response's status and content type and
// returns a pooled buffered writer for its body, and the func that gives the
// writer back. Items are streamed through it rather than joined into one
// buffer: a list of 10,000 pods is some 30 MB, and allocating (and clearing)
// that per request made the garbage collector, which then marks the whole
// watch cache, the largest cost of a busy LIST.
func startListResponse(w http.ResponseWriter, contentType string) (*bufio.Writer, func()) {
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(http.StatusOK)
	bw := listWriters.Get().(*bufio.Writer)
	bw.Reset(w)
	return bw, func() {
		bw.Reset(nil)
		listWriters.Put(bw)
	}
}

// listWriters buffer streamed lists; 256 KiB is a few HTTP/2 frames'
// worth per write, so a list costs the connection a handful of writes per
// megabyte and no allocation.
var listWriters = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 256<<10) }}
