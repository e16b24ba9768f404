// Package webui is the cluster's web view, served by `petrel server` at
// /ui/: nodes, workloads, pods, Services with their endpoints and the BPF
// load balancer's traffic, events and DNS names, kept live by watches.
//
// The page is server-rendered HTML plus one small script, both embedded in
// the binary: nothing is fetched from the network at run time. The page
// holds no data of its own: its script reads the API with the credentials
// the page was loaded with (the admin client certificate, or the bearer
// token a browser sends), so the user sees exactly what RBAC lets them
// read. BPF traffic comes from each node's /metrics through the API's
// nodes/proxy, which RBAC guards the same way.
package webui

import (
	"embed"
	"html/template"
	"io/fs"
	"net/http"
	"path"
)

//go:embed static
var static embed.FS

var page = template.Must(template.ParseFS(static, "static/index.html"))

// Config is what the page needs from the server.
type Config struct {
	// ClusterDomain is the DNS zone of Services, for the DNS names shown.
	ClusterDomain string
	// User names the authenticated user of a request ("" when unknown).
	User func(*http.Request) string
}

// Handler serves /ui/ and its assets. It must sit behind the server's
// authentication: it serves whoever reaches it.
func Handler(cfg Config) http.Handler {
	if cfg.ClusterDomain == "" {
		cfg.ClusterDomain = "cluster.local"
	}
	assets, _ := fs.Sub(static, "static")
	files := http.FileServerFS(assets)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		// Only this page's own script and style run: an object name shown
		// on the page can never become markup or code.
		w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Cache-Control", "no-store")
		switch p := path.Clean(r.URL.Path); p {
		case "/ui":
			if r.URL.Path == "/ui" {
				http.Redirect(w, r, "/ui/", http.StatusFound)
				return
			}
			user := ""
			if cfg.User != nil {
				user = cfg.User(r)
			}
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			_ = page.Execute(w, struct{ User, ClusterDomain string }{user, cfg.ClusterDomain})
		case "/ui/app.js", "/ui/app.css":
			r2 := r.Clone(r.Context())
			r2.URL.Path = path.Base(p)
			files.ServeHTTP(w, r2)
		default:
			http.NotFound(w, r)
		}
	})
}
