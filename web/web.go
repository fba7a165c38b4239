// Package web serves the seckill page: a single-page app (static/index.html,
// app.js, style.css) embedded in the binary, written in plain JavaScript with
// no build step and nothing loaded from other sites. The page speaks only the
// JSON API of api.md, so it needs no server-side code beyond this handler.
package web

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"strings"
)

//go:embed static
var static embed.FS

// Handler returns the handler for the page. Mount it at "/" below the API
// routes: it serves "/" (index.html) and the files next to it, answers 404
// for any other path and 405 for methods other than GET and HEAD. Responses
// carry an ETag (so a reload costs a 304), "Cache-Control: no-cache" (so a
// new build shows up at once), nosniff and a Content-Security-Policy that
// allows scripts and styles from this origin only, and connections (fetch
// and the push WebSocket, /api/ws) to this origin only: under CSP Level 3
// 'self' in connect-src matches ws: and wss: on the page's own host.
func Handler() http.Handler {
	root, err := fs.Sub(static, "static")
	if err != nil {
		panic("web: " + err.Error()) // the embed directive guarantees the directory
	}
	etags := map[string]string{}
	err = fs.WalkDir(root, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(root, p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		etags["/"+p] = `"` + hex.EncodeToString(sum[:8]) + `"`
		return nil
	})
	if err != nil {
		panic("web: " + err.Error())
	}
	etags["/"] = etags["/index.html"]
	files := http.FileServerFS(root)

	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		p := path.Clean("/" + r.URL.Path)
		if strings.HasSuffix(r.URL.Path, "/") && p != "/" {
			p += "/"
		}
		etag, ok := etags[p]
		if !ok {
			http.NotFound(w, r)
			return
		}
		h := w.Header()
		h.Set("ETag", etag)
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Content-Security-Policy", "default-src 'self'; connect-src 'self'; img-src 'self' data: https: http:; "+
			"object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
		files.ServeHTTP(w, r)
	})
}
