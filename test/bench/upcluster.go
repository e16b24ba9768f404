package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"k8s.io/client-go/kubernetes"

	"github.com/petrel-project/petrel/dataplane/runtime"
	"github.com/petrel-project/petrel/test/images"
)

// UpCluster is a one-machine cluster (`petrel up`) started for a suite,
// confined to cgroups, pins and a DNS address of its own, with the test
// image imported into its containerd.
type UpCluster struct {
	Server      *Server
	Clientset   kubernetes.Interface
	Runtime     *runtime.Containerd // its containerd, holding the test image
	Archive     string              // the test image's OCI archive, as imported
	MetricsPort int

	petrel   string
	name     string
	lbCgroup string
	dnsAddr  string
}

// StartUpCluster starts `petrel up` as node name with extraArgs after the
// suite's defaults, and imports the test image.
func StartUpCluster(ctx context.Context, petrel, name, dnsAddr string, progress func(string, ...interface{}), extraArgs ...string) (_ *UpCluster, err error) {
	ports, err := FreePorts(2)
	if err != nil {
		return nil, err
	}
	u := &UpCluster{petrel: petrel, name: name, lbCgroup: "petrel-" + name, dnsAddr: dnsAddr, MetricsPort: ports[0]}
	progress("starting petrel up (node %s)", name)
	args := append([]string{"--node-name", name, "--lb-cgroup", u.lbCgroup, "--cgroup-root", u.lbCgroup + "/pods",
		"--local-dns-address", dnsAddr, "--metrics-address", fmt.Sprintf("127.0.0.1:%d", ports[0]),
		"--node-server-address", fmt.Sprintf(":%d", ports[1]), "--nodeport-interfaces", "none",
		"--ingress-http-address=", "--ingress-https-address="}, extraArgs...)
	if u.Server, err = StartPetrel(ctx, petrel, "up", args...); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			u.Stop(progress)
		}
	}()
	if _, u.Clientset, err = u.Server.Client(); err != nil {
		return nil, err
	}
	progress("building and importing %s", images.TestServer)
	archive, err := images.BuildTestServer(ctx, filepath.Join(u.Server.Dir, "build"))
	if err != nil {
		return nil, err
	}
	u.Archive = archive
	if u.Runtime, err = runtime.Connect(ctx, filepath.Join(u.Server.Dir, "containerd", "containerd.sock")); err != nil {
		return nil, err
	}
	if _, err := runtime.Import(ctx, u.Runtime.Client, archive); err != nil {
		return nil, err
	}
	return u, nil
}

// Stop stops the cluster and removes what its node left (petrel node
// --cleanup); when that fails, the data dir stays for another try.
func (u *UpCluster) Stop(progress func(string, ...interface{})) {
	if u.Runtime != nil {
		u.Runtime.Stop()
	}
	// The data dir stays until the cleanup has read the pods' records.
	u.Server.Terminate()
	out, err := exec.Command(u.petrel, "node", "--cleanup", "--data-dir", u.Server.Dir, "--node-name", u.name,
		"--cgroup-root", u.lbCgroup+"/pods", "--local-dns-address", u.dnsAddr).CombinedOutput()
	if err != nil {
		progress("cleanup failed (%v); rerun: %s node --cleanup --data-dir %s --node-name %s --cgroup-root %s/pods\n%s",
			err, u.petrel, u.Server.Dir, u.name, u.lbCgroup, out)
		return
	}
	_ = runtime.RemoveCgroup(u.lbCgroup)
	_ = os.RemoveAll(u.Server.Dir)
}
