package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/petrel-project/petrel/controlplane/server"
	"github.com/petrel-project/petrel/topology"
)

// topologyName names the namespaces, links, cgroups and nodes of
// `petrel up --nodes N`.
const topologyName = "petrel"

// multiNodeFlags are `petrel up`'s flags for a cluster of nodes in network
// namespaces.
type multiNodeFlags struct {
	nodes, segments int
	cleanup         bool
}

// nodeDataDir is where node name keeps its state under the cluster's data
// directory.
func nodeDataDir(dataDir, name string) string { return filepath.Join(dataDir, "nodes", name) }

// runMultiNode runs `petrel up --nodes N`: the topology, the control plane in
// the root namespace (reached by the nodes at the segment's address), and N
// `petrel node` processes, each in its namespace. When ctx ends it stops and
// removes all of it.
func runMultiNode(ctx context.Context, opts server.Options, mf multiNodeFlags) error {
	topo, err := topology.Plan(topology.Spec{Name: topologyName, Nodes: mf.nodes, Segments: mf.segments})
	if err != nil {
		return fmt.Errorf("--nodes %d --segments %d: %w", mf.nodes, mf.segments, err)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "petrel: building %d node namespaces on %d segment(s) ...\n", mf.nodes, mf.segments)
	if topo, err = topology.Build(topo.Spec); err != nil {
		return fmt.Errorf("%w (petrel up --cleanup removes what a previous run left)", err)
	}
	// The nodes reach the API at the segment's address: it goes in the
	// serving certificate and the kubernetes Service's endpoints.
	opts.AdvertiseAddress = topo.ServerAddress.String()
	fmt.Fprintf(os.Stderr, "petrel: starting the control plane in %s ...\n", opts.DataDir)
	s, err := server.Start(ctx, opts)
	if err != nil {
		_ = topo.Remove()
		return err
	}
	serverURL := fmt.Sprintf("https://%s:%d", topo.ServerAddress, s.Port)
	procs := make([]*topology.Process, len(topo.Nodes))
	stopAll := func() {
		var wg sync.WaitGroup
		for _, p := range procs {
			if p != nil {
				wg.Add(1)
				go func() { defer wg.Done(); p.Signal(syscall.SIGTERM, 30*time.Second) }()
			}
		}
		wg.Wait()
		cleanupTopology(context.WithoutCancel(ctx), self, opts.DataDir, topo)
		s.Stop()
	}
	for i, n := range topo.Nodes {
		dir := nodeDataDir(opts.DataDir, n.Name)
		// Each node joins with the cluster's token, as another machine would:
		// its own certificate (system:node:<name>), never the admin's.
		args := append(n.NodeArgs(dir), "--token", s.NodeToken, "--server", serverURL)
		fmt.Fprintf(os.Stderr, "petrel: starting node %s (%s, segment %d) ...\n", n.Name, n.Address, n.Segment)
		if procs[i], err = topology.StartOnNode(n, filepath.Join(dir, "node.log"), self, args...); err != nil {
			stopAll()
			return err
		}
	}
	wctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	errs := make([]error, len(topo.Nodes))
	var wg sync.WaitGroup
	for i, n := range topo.Nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if errs[i] = topology.WaitHealthy(wctx, n, procs[i]); errs[i] == nil {
				fmt.Fprintf(os.Stderr, "petrel: node %s is up\n", n.Name)
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		stopAll()
		return err
	}
	fmt.Printf("\nPetrel is up with %d nodes: API server at %s (nodes reach it at %s)\n", len(topo.Nodes), s.URL, serverURL)
	for _, n := range topo.Nodes {
		fmt.Printf("  node %-12s %-15s segment %d  netns %s  log %s\n", n.Name, n.Address, n.Segment, n.Netns, filepath.Join(nodeDataDir(opts.DataDir, n.Name), "node.log"))
	}
	fmt.Printf("  kubeconfig: %s\n", s.Kubeconfig)
	fmt.Printf("  try:        export KUBECONFIG=%s; kubectl get nodes -o wide\n", s.Kubeconfig)
	fmt.Printf("  a shell on a node: nsenter --net=%s bash   (Ctrl-C stops the cluster and removes the namespaces)\n\n", topo.Nodes[0].Netns)
	select {
	case <-ctx.Done():
	case err = <-serverDone(s):
	}
	fmt.Fprintln(os.Stderr, "petrel: stopping the nodes and removing their namespaces, pods, maps and cgroups ...")
	stopAll()
	fmt.Fprintln(os.Stderr, "petrel: stopped; nothing of the cluster is left on the machine but its data directory.")
	return err
}

func serverDone(s *server.Server) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- s.Wait() }()
	return ch
}

// cleanupTopology removes each node's pods, pins and DNS address (with
// `petrel node --cleanup` inside the node's namespace), then the namespaces,
// links and cgroups. It reports what it could not remove and goes on.
func cleanupTopology(ctx context.Context, self, dataDir string, topo *topology.Topology) {
	err := topo.Teardown(ctx, self, func(n topology.Node) string { return nodeDataDir(dataDir, n.Name) })
	if err != nil {
		fmt.Fprintf(os.Stderr, "petrel: cleanup: %v\n", err)
	}
}

// cleanupMultiNode is `petrel up --cleanup`: it removes what a cluster of
// `petrel up --nodes N` left after a crash.
func cleanupMultiNode(ctx context.Context, dataDir string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	count := 0
	for i := range topology.MaxNodes {
		if _, err := os.Stat(filepath.Join("/run/netns", fmt.Sprintf("%s-n%d", topologyName, i))); err == nil {
			count = i + 1
		}
	}
	if count == 0 {
		if err := topology.RemoveNamed(topologyName); err != nil {
			return err
		}
		fmt.Println("No node namespaces of petrel up --nodes were left; removed any leftover links and cgroups.")
		return nil
	}
	topo, err := topology.Plan(topology.Spec{Name: topologyName, Nodes: count, Segments: 1})
	if err != nil {
		return err
	}
	// Node daemons of a crashed petrel up may still be stopping (they got
	// SIGTERM when it died): their cleanup must not race them.
	for _, n := range topo.Nodes {
		n.StopDaemons(self, 30*time.Second)
	}
	cleanupTopology(ctx, self, dataDir, topo)
	fmt.Printf("Removed the %d node namespaces of petrel up --nodes, their pods, maps, links and cgroups.\n", count)
	return nil
}
