// Package bpfobj owns Petrel's compiled BPF objects: it loads them, pins their
// maps and links under the node's bpffs directory, attaches the socket load
// balancer to the node's cgroup v2 subtree, and opens the pinned maps for
// readers such as petrelctl. Pins outlive the process, so forwarding goes on
// while the node daemon restarts, and a restarted daemon swaps its new
// programs into the pinned links in place.
package bpfobj
