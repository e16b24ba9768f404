package webui

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func get(t *testing.T, h http.Handler, method, path string) *httptest.ResponseRecorder {
	t.Helper()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(method, path, nil))
	return w
}

func TestHandler(t *testing.T) {
	h := Handler(Config{ClusterDomain: "example.test", User: func(*http.Request) string { return `<script>alert(1)</script>` }})

	w := get(t, h, http.MethodGet, "/ui/")
	body := w.Body.String()
	if w.Code != http.StatusOK || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/html") {
		t.Fatalf("GET /ui/: %d %q", w.Code, w.Header().Get("Content-Type"))
	}
	if strings.Contains(body, "<script>alert(1)</script>") || !strings.Contains(body, "&lt;script&gt;") {
		t.Errorf("the user name is not escaped:\n%s", body)
	}
	if !strings.Contains(body, `data-cluster-domain="example.test"`) || !strings.Contains(body, `src="/ui/app.js"`) {
		t.Errorf("page lacks the domain or the script:\n%s", body)
	}
	if csp := w.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
		t.Errorf("Content-Security-Policy = %q", csp)
	}

	for path, typ := range map[string]string{"/ui/app.js": "javascript", "/ui/app.css": "text/css"} {
		w := get(t, h, http.MethodGet, path)
		if w.Code != http.StatusOK || !strings.Contains(w.Header().Get("Content-Type"), typ) || w.Body.Len() == 0 {
			t.Errorf("GET %s: %d %q, %d bytes", path, w.Code, w.Header().Get("Content-Type"), w.Body.Len())
		}
	}
	if w := get(t, h, http.MethodGet, "/ui"); w.Code != http.StatusFound || w.Header().Get("Location") != "/ui/" {
		t.Errorf("GET /ui: %d to %q, want a redirect to /ui/", w.Code, w.Header().Get("Location"))
	}
	for _, path := range []string{"/ui/index.html", "/ui/nothing", "/ui/../etc/passwd", "/ui/static/app.js"} {
		if w := get(t, h, http.MethodGet, path); w.Code != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", path, w.Code)
		}
	}
	if w := get(t, h, http.MethodPost, "/ui/"); w.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST /ui/: %d, want 405", w.Code)
	}
}
