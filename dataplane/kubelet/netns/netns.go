// Package netns makes, mounts and removes the pods' network namespaces,
// named as `ip netns` shows them, and keeps /run/netns a shared mount so that
// iproute2 and the node never hide each other's namespaces.
package netns

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// Dir is where named network namespaces live, so that `ip netns` and
// network engineers see the pods' namespaces as petrel-<pod uid>.
const Dir = "/run/netns"

// Path is where the network namespace of the pod with this UID is mounted.
func Path(uid string) string { return filepath.Join(Dir, "petrel-"+uid) }

// New makes a network namespace and bind-mounts it at path.
func New(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o444)
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	f.Close()
	errc := make(chan error, 1)
	go func() {
		// The namespace is made on this thread, mounted, and the thread goes
		// back to its own namespace before Go may use it again. A thread
		// is never left to die: child processes (containerd) forked from it
		// would get their parent-death signal.
		goruntime.LockOSThread()
		orig, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			goruntime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			goruntime.UnlockOSThread()
			errc <- fmt.Errorf("unshare the network namespace: %w", err)
			return
		}
		src := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
		mountErr := unix.Mount(src, path, "none", unix.MS_BIND, "")
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			// Stuck in the new namespace: let the thread die with the
			// goroutine rather than serve others from the wrong namespace.
			errc <- fmt.Errorf("return to the host network namespace: %w", err)
			return
		}
		goruntime.UnlockOSThread()
		if mountErr != nil {
			errc <- fmt.Errorf("bind-mount the network namespace at %s: %w", path, mountErr)
			return
		}
		errc <- nil
	}()
	if err := <-errc; err != nil {
		_ = os.Remove(path)
		return err
	}
	return nil
}

// PrepareDir makes Dir a mount of its own and shared, as
// iproute2 does before `ip netns add`. Left a plain directory, the first
// `ip netns add` on the node (or any tool that bind-mounts the directory
// over itself) hid the pods' namespace mounts below copies: unmounting a
// copy left the original mounted, and removing the file failed with EBUSY
// for ever. A bind of a shared mount is its peer, so an unmount through
// either reaches both, and iproute2 finds the mount point and binds nothing.
func PrepareDir() error {
	if err := os.MkdirAll(Dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", Dir, err)
	}
	err := unix.Mount("", Dir, "none", unix.MS_SHARED|unix.MS_REC, "")
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("make %s a shared mount: %w", Dir, err)
	}
	// Not a mount point yet. Namespaces a node before this one mounted here
	// would be hidden below the bind in turn: hold each by a descriptor,
	// unmount it, and mount it again on top.
	held, err := heldMounts()
	defer func() {
		for _, f := range held {
			f.Close()
		}
	}()
	if err != nil {
		return err
	}
	for path := range held {
		if err := unix.Unmount(path, unix.MNT_DETACH); err != nil {
			return fmt.Errorf("unmount %s to mount it again on %s of its own: %w", path, Dir, err)
		}
	}
	if err := unix.Mount(Dir, Dir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind-mount %s on itself: %w", Dir, err)
	}
	if err := unix.Mount("", Dir, "none", unix.MS_SHARED|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("make %s a shared mount: %w", Dir, err)
	}
	var errs []error
	for path, f := range held {
		if err := unix.Mount(fmt.Sprintf("/proc/self/fd/%d", f.Fd()), path, "none", unix.MS_BIND, ""); err != nil {
			errs = append(errs, fmt.Errorf("mount the namespace at %s again: %w", path, err))
		}
	}
	return errors.Join(errs...)
}

// heldMounts opens the namespaces mounted directly in Dir.
func heldMounts() (map[string]*os.File, error) {
	info, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("read the mount table: %w", err)
	}
	held := map[string]*os.File{}
	for _, line := range strings.Split(string(info), "\n") {
		// id parent major:minor root mount-point ... - fstype source ...
		fields := strings.Fields(line)
		if len(fields) < 5 || filepath.Dir(fields[4]) != Dir || !strings.Contains(line, " - nsfs ") {
			continue
		}
		f, err := os.Open(fields[4])
		if errors.Is(err, os.ErrNotExist) {
			// Removed since the table was read, or hidden below another
			// mount (a /run of its own): nothing to mount again.
			continue
		}
		if err != nil {
			return held, fmt.Errorf("open the namespace at %s: %w", fields[4], err)
		}
		held[fields[4]] = f
	}
	return held, nil
}

// Remove unmounts and removes a namespace made by New; a missing
// one is already gone.
func Remove(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		return err
	}
	return nil
}
