// Package proxy turns Services and EndpointSlices into the socket load
// balancer's BPF map entries: one frontend per service address and port
// (ClusterIP, NodePort, LoadBalancer IP, external IP), each with its backends
// chosen by Kubernetes' rules (ready endpoints, terminating ones as a
// fallback, traffic policies Local), written as diffs in an order that never
// lets a lookup see a half-written service.
package proxy
