// Package probe performs the network actions of Kubernetes' probes and
// lifecycle hooks against a pod's address: HTTP GET (with the kubelet's
// User-Agent and status rule), TCP connect and the gRPC health check. Exec
// actions run in the container and stay with the kubelet.
package probe

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"strconv"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// HTTPGet does an httpGet action against the pod at podIP (or the host the
// action names); a status outside 200–399 fails.
func HTTPGet(ctx context.Context, get *corev1.HTTPGetAction, c *corev1.Container, podIP string) error {
	port, err := ResolvePort(get.Port, c)
	if err != nil {
		return err
	}
	host := get.Host
	if host == "" {
		host = podIP
	}
	scheme := "http"
	if get.Scheme == corev1.URISchemeHTTPS {
		scheme = "https"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s://%s%s", scheme, net.JoinHostPort(host, strconv.Itoa(port)), get.Path), nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", "kube-probe/1.32")
	for _, h := range get.HTTPHeaders {
		req.Header.Set(h.Name, h.Value)
	}
	resp, err := probeClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode >= 400 {
		return fmt.Errorf("HTTP probe failed with statuscode: %d", resp.StatusCode)
	}
	return nil
}

// TCP does a tcpSocket action: it succeeds when a connection opens.
func TCP(ctx context.Context, tcp *corev1.TCPSocketAction, c *corev1.Container, podIP string) error {
	port, err := ResolvePort(tcp.Port, c)
	if err != nil {
		return err
	}
	host := tcp.Host
	if host == "" {
		host = podIP
	}
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return err
	}
	return conn.Close()
}

// GRPC does a grpc action: the standard health service must say SERVING.
func GRPC(ctx context.Context, grpcAction *corev1.GRPCAction, podIP string) error {
	conn, err := grpc.NewClient(net.JoinHostPort(podIP, strconv.Itoa(int(grpcAction.Port))), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	svc := ""
	if grpcAction.Service != nil {
		svc = *grpcAction.Service
	}
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
	if err != nil {
		return err
	}
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("service unhealthy (responded with %q)", resp.GetStatus())
	}
	return nil
}

var probeClient = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, DisableKeepAlives: true}} //nolint:gosec // probes do not verify, as the kubelet's

// ResolvePort is a probe's port: a number, or the name of one of the
// container's ports.
func ResolvePort(p intstr.IntOrString, c *corev1.Container) (int, error) {
	if p.Type == intstr.Int {
		return p.IntValue(), nil
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return int(cp.ContainerPort), nil
		}
	}
	if n, err := strconv.Atoi(p.StrVal); err == nil {
		return n, nil
	}
	return 0, fmt.Errorf("container %s has no port named %q", c.Name, p.StrVal)
}
