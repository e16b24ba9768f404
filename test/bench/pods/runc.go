package pods

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/petrel-project/petrel/dataplane/runtime"
	"github.com/petrel-project/petrel/test/images"
)

// runcRuns times `runc run -d` of a busybox container that sleeps, n of
// them in batches started together, each in its own bundle (runc's default
// spec: new namespaces, network included, and a cgroup). This is the
// floor under any pod start with runc on the machine: no containerd, shim,
// image, network set-up or API. Everything it makes lives under dir and
// the cgroup runcCgroup(), and is removed before it returns.
func runcRuns(ctx context.Context, dir string, n, batch int) (_ []time.Duration, err error) {
	return ociRuns(ctx, "runc", dir, n, batch)
}

// ociRuns is runcRuns with another runc-compatible binary (crun): its own
// default spec, the same container.
func ociRuns(ctx context.Context, bin, dir string, n, batch int) (_ []time.Duration, err error) {
	state := filepath.Join(dir, "state")
	cgroup := runcCgroup()
	rootfs := filepath.Join(dir, "rootfs")
	if err := os.MkdirAll(filepath.Join(rootfs, "bin"), 0o755); err != nil {
		return nil, err
	}
	busybox, err := os.ReadFile(images.Busybox)
	if err != nil {
		return nil, fmt.Errorf("the runc baseline needs busybox-static (apt-get install busybox-static): %w", err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "bin", "busybox"), busybox, 0o755); err != nil {
		return nil, err
	}
	if err := os.Symlink("busybox", filepath.Join(rootfs, "bin", "sleep")); err != nil {
		return nil, err
	}
	if bin == "crun" {
		// crun refuses a hybrid cgroup host until v2 offers no
		// controllers: what the node does before it runs crun.
		if err := runtime.PrepareCrun(); err != nil {
			return nil, err
		}
	}
	// Each binary writes its own default spec (crun's says an OCI version
	// crun takes); crun spec has no --bundle, so both run in dir.
	specCmd := exec.CommandContext(ctx, bin, "spec")
	specCmd.Dir = dir
	if out, err := specCmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("%s spec: %v: %s", bin, err, out)
	}
	template, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		return nil, err
	}
	if err := makeMountPoints(rootfs, template); err != nil {
		return nil, err
	}
	var ids []string
	defer func() {
		for _, id := range ids {
			if out, derr := exec.Command(bin, "--root", state, "delete", "--force", id).CombinedOutput(); derr != nil && err == nil {
				err = fmt.Errorf("%s delete %s: %v: %s", bin, id, derr, out)
			}
		}
		if cerr := runtime.RemoveCgroup(cgroup); cerr != nil && err == nil {
			err = cerr
		}
		_ = os.RemoveAll(dir)
	}()
	return startInBatches(n, batch, func(i int) (func() error, error) {
		id := fmt.Sprintf("bench-%s-%d-%03d", bin, os.Getpid(), i)
		bundle := filepath.Join(dir, id)
		if err := writeRuncBundle(bundle, template, rootfs, "/"+cgroup+"/"+id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
		return func() error { return runcRun(ctx, bin, state, bundle, id) }, nil
	})
}

// makeMountPoints makes, before any container starts, the directories the
// default spec mounts over (proc, sys, dev...) in the shared rootfs: crun
// makes a missing mount point itself and fails with EEXIST when a container
// started beside it made the same one a moment before.
func makeMountPoints(rootfs string, template []byte) error {
	var spec specs.Spec
	if err := json.Unmarshal(template, &spec); err != nil {
		return fmt.Errorf("the runtime's default spec: %w", err)
	}
	for _, m := range spec.Mounts {
		if err := os.MkdirAll(filepath.Join(rootfs, m.Destination), 0o755); err != nil {
			return fmt.Errorf("mount point %s: %w", m.Destination, err)
		}
	}
	return nil
}

// runcCgroup is the cgroup, in every hierarchy, that holds this process's
// bare runc containers.
func runcCgroup() string { return fmt.Sprintf("petrel-bench-runc-%d", os.Getpid()) }

// runcRun makes one `runc run --detach`. Detached without a terminal, runc
// hands its own stdio to the container, so the output goes to files: a pipe
// would stay open as long as the container runs.
func runcRun(ctx context.Context, bin, state, bundle, id string) error {
	stderr, err := os.Create(filepath.Join(bundle, "stderr"))
	if err != nil {
		return err
	}
	defer stderr.Close()
	cmd := exec.CommandContext(ctx, bin, "--root", state, "run", "--detach", "--bundle", bundle, id)
	cmd.Stderr = stderr
	if err := cmd.Run(); err != nil {
		msg, _ := os.ReadFile(stderr.Name())
		return fmt.Errorf("%s run %s: %w: %s", bin, id, err, msg)
	}
	return nil
}

// writeRuncBundle writes a bundle whose config is runc's default spec
// (template) running `sleep 3600` detached on the shared read-only rootfs.
func writeRuncBundle(bundle string, template []byte, rootfs, cgroup string) error {
	var spec specs.Spec
	if err := json.Unmarshal(template, &spec); err != nil {
		return fmt.Errorf("runc's default spec: %w", err)
	}
	spec.Process.Terminal = false
	spec.Process.Args = []string{"/bin/sleep", "3600"}
	spec.Root = &specs.Root{Path: rootfs, Readonly: true}
	if spec.Linux == nil {
		spec.Linux = &specs.Linux{}
	}
	spec.Linux.CgroupsPath = cgroup
	b, err := json.Marshal(&spec)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(bundle, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(bundle, "config.json"), b, 0o644)
}
