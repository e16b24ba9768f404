package apiserver

import (
	"fmt"
	"net/http"
	"sync"

	"github.com/petrel-project/petrel/controlplane/admission"
)

// maxWarnings bounds the Warning headers of one response, as Kubernetes'
// recorder does, so that a chatty webhook cannot bloat it.
const maxWarnings = 64

// withWarnings gives admission a sink for warnings (webhooks' and
// policies'): each distinct one becomes a `Warning: 299 - "text"` header.
// Validating webhooks run in parallel, hence the lock; admission ends
// before the response is written, so the headers are still open. Reads
// are not admitted and get none (nothing to allocate on the hot path).
func withWarnings(w http.ResponseWriter, r *http.Request) *http.Request {
	switch r.Method {
	case http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
	default:
		return r
	}
	var mu sync.Mutex
	seen := map[string]bool{}
	return r.WithContext(admission.WithWarnings(r.Context(), func(text string) {
		mu.Lock()
		defer mu.Unlock()
		if seen[text] || len(seen) >= maxWarnings {
			return
		}
		seen[text] = true
		w.Header().Add("Warning", fmt.Sprintf("299 - %q", text))
	}))
}
