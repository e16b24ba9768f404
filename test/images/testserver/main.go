// Command testserver is the process of Petrel's test image
// petrel.local/testserver:1, in the spirit of Kubernetes' agnhost: HTTP on
// :8080 (/hostname, /echo, /ws a WebSocket echo, /healthz, /exit, /dns, /probe
// and /hold, the clients of the NetworkPolicy truth tables), TCP and UDP echo
// on :9000 and UDP echo on :9001 (a second port of each protocol for the
// tables), and an admission webhook (test/webhookserver) over TLS on :8443
// when WEBHOOK_TLS_CERT and WEBHOOK_TLS_KEY hold a PEM pair. Tests use it to
// see which pod answered and to make a pod fail.
// `testserver kube-get PATH` is an in-cluster API client, as client-go's
// in-cluster config makes one: KUBERNETES_SERVICE_HOST/PORT, the service
// account token and the CA from the projected volume. `testserver get URL`
// and `testserver udp HOST:PORT MSG` are clients run inside a pod (with
// kubectl exec), as agnhost's connect is: they print what answered.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/websocket"

	"github.com/petrel-project/petrel/test/webhookserver"
)

// serviceAccountDir is where pods find their API credentials.
const serviceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount"

// kubeGet GETs path from the API server as a pod's in-cluster client does
// and prints the body; the exit code says whether it got a 200.
func kubeGet(path string) int {
	token, err := os.ReadFile(serviceAccountDir + "/token")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ca, err := os.ReadFile(serviceAccountDir + "/ca.crt")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		fmt.Fprintln(os.Stderr, "ca.crt holds no certificate")
		return 2
	}
	url := "https://" + net.JoinHostPort(os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")) + path
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	return fetch(&http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}, req)
}

// fetch prints the body of req's answer; the exit code says whether it was
// a 200.
func fetch(c *http.Client, req *http.Request) int {
	resp, err := c.Do(req)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer resp.Body.Close()
	_, _ = io.Copy(os.Stdout, resp.Body)
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintln(os.Stderr, resp.Status)
		return 1
	}
	return 0
}

func main() {
	if len(os.Args) == 3 && os.Args[1] == "kube-get" {
		os.Exit(kubeGet(os.Args[2]))
	}
	if len(os.Args) == 3 && os.Args[1] == "get" {
		os.Exit(httpGet(os.Args[2]))
	}
	if len(os.Args) == 4 && os.Args[1] == "udp" {
		os.Exit(udpRoundTrip(os.Args[2], os.Args[3]))
	}
	httpAddr := flag.String("http", ":8080", "HTTP address")
	echoAddr := flag.String("echo", ":9000", "TCP and UDP echo address")
	echo2Addr := flag.String("echo2", ":9001", "a second UDP echo address")
	webhookAddr := flag.String("webhook", ":8443", "admission webhook (HTTPS) address, served when WEBHOOK_TLS_CERT and WEBHOOK_TLS_KEY are set")
	flag.Parse()

	go tcpEcho(*echoAddr)
	go udpEcho(*echoAddr)
	go udpEcho(*echo2Addr)

	host, _ := os.Hostname()
	mux := http.NewServeMux()
	mux.HandleFunc("/hostname", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, host) })
	// An HTML page with an absolute link, as agnhost's porter serves
	// "rewriteme": a proxy in front must rewrite it to pass through itself.
	mux.HandleFunc("/page", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, `<html><body><a href="/hostname">hostname</a></body></html>`)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, host) })
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		if msg := r.URL.Query().Get("msg"); msg != "" {
			fmt.Fprint(w, msg)
			return
		}
		_, _ = io.Copy(w, r.Body)
	})
	// /healthz fails once /tmp/unhealthy exists, so a test can turn a probe
	// red with `kubectl exec ... touch /tmp/unhealthy`.
	mux.HandleFunc("/ws", wsEcho(host))
	mux.HandleFunc("/probe", probe)
	mux.HandleFunc("/hold", hold)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		if _, err := os.Stat("/tmp/unhealthy"); err == nil {
			http.Error(w, "unhealthy", http.StatusInternalServerError)
			return
		}
		fmt.Fprint(w, "ok")
	})
	mux.HandleFunc("/exit", func(w http.ResponseWriter, r *http.Request) {
		code, _ := strconv.Atoi(r.URL.Query().Get("code"))
		fmt.Fprintf(w, "exiting with %d\n", code)
		go func() { time.Sleep(100 * time.Millisecond); os.Exit(code) }()
	})
	mux.HandleFunc("/dns", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		addrs, err := net.DefaultResolver.LookupHost(ctx, r.URL.Query().Get("name"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		fmt.Fprint(w, strings.Join(addrs, "\n"))
	})
	// An admission webhook over TLS, for the webhook e2e test, when the pod
	// is given a serving certificate (PEM in the environment).
	if cert, key := os.Getenv("WEBHOOK_TLS_CERT"), os.Getenv("WEBHOOK_TLS_KEY"); cert != "" && key != "" {
		go serveWebhook(host, *webhookAddr, cert, key)
	}
	log.Printf("testserver %s: HTTP on %s, echo on %s", host, *httpAddr, *echoAddr)
	srv := &http.Server{Addr: *httpAddr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	log.Fatal(srv.ListenAndServe())
}

// httpGet prints the body of GET url; the exit code says whether a 200
// came back within 5 s.
func httpGet(url string) int {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	return fetch(&http.Client{Timeout: 5 * time.Second}, req)
}

// udpRoundTrip sends msg to addr and prints the first datagram that comes
// back within 3 s.
func udpRoundTrip(addr, msg string) int {
	c, err := net.Dial("udp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := c.Write([]byte(msg)); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	buf := make([]byte, 65536)
	n, err := c.Read(buf)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	os.Stdout.Write(buf[:n])
	return 0
}

func tcpEcho(addr string) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		log.Fatalf("tcp echo: %v", err)
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			log.Fatalf("tcp echo: %v", err)
		}
		go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
	}
}

func udpEcho(addr string) {
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		log.Fatalf("udp echo: %v", err)
	}
	buf := make([]byte, 65536)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			log.Fatalf("udp echo: %v", err)
		}
		_, _ = pc.WriteTo(buf[:n], from)
	}
}

// wsEcho answers a WebSocket: each message comes back prefixed with the
// pod's name.
func wsEcho(host string) http.HandlerFunc {
	up := websocket.Upgrader{}
	return func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return // Upgrade answered the client
		}
		defer c.Close()
		for {
			kind, msg, err := c.ReadMessage()
			if err != nil {
				return
			}
			if err := c.WriteMessage(kind, append([]byte(host+": "), msg...)); err != nil {
				return
			}
		}
	}
}

// serveWebhook serves test/webhookserver over TLS with the given PEM pair.
func serveWebhook(host, addr, certPEM, keyPEM string) {
	pair, err := tls.X509KeyPair([]byte(certPEM), []byte(keyPEM))
	if err != nil {
		log.Fatalf("webhook certificate: %v", err)
	}
	srv := &http.Server{Addr: addr, Handler: webhookserver.New(host), ReadHeaderTimeout: 10 * time.Second,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}}
	log.Printf("testserver %s: admission webhook on %s", host, addr)
	log.Fatal(srv.ListenAndServeTLS("", ""))
}
