package topology

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/petrel-project/petrel/dataplane/bpfobj"
	"github.com/petrel-project/petrel/dataplane/runtime"
)

// Remove deletes what Build and AddHost made: namespaces (their links go
// with them), bridges and cgroups. The processes that ran inside must have
// stopped first, or a namespace lives on until they do. What is already gone
// is not an error.
func (t *Topology) Remove() error {
	err := RemoveNamed(t.Name)
	if t.lock != nil {
		t.lock.Close() // the lock goes with the descriptor
		t.lock = nil
	}
	return err
}

// RemoveNamed deletes every namespace, bridge and cgroup of the topology
// named name, whatever built it: `--cleanup` after a crash uses it.
func RemoveNamed(name string) error {
	if !validName.MatchString(name) {
		return fmt.Errorf("topology name %q is not valid", name)
	}
	var errs []error
	entries, err := os.ReadDir("/run/netns")
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	for _, e := range entries {
		if ownedName(name, e.Name()) {
			if err := netns.DeleteNamed(e.Name()); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, fmt.Errorf("delete namespace %s: %w", e.Name(), err))
			}
		}
	}
	links, err := linkList()
	if err != nil {
		errs = append(errs, err)
	}
	// Bridges first; the veths of deleted namespaces went with them, and
	// what is left (a veth whose namespace a process still holds) too.
	for _, l := range links {
		n := l.Attrs().Name
		if strings.HasPrefix(n, name) && len(n) > len(name) && isLinkSuffix(n[len(name):]) {
			if err := netlink.LinkDel(l); err != nil && !errors.Is(err, syscall.ENODEV) {
				errs = append(errs, fmt.Errorf("delete link %s: %w", n, err))
			}
		}
	}
	mount, err := bpfobj.CgroupV2Mount()
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	cgroups, _ := filepath.Glob(filepath.Join(mount, name+"-n*"))
	for _, cg := range cgroups {
		if ownedName(name, filepath.Base(cg)) {
			if err := runtime.RemoveCgroup(filepath.Base(cg)); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// ownedName: "<name>-n<digits>", "<name>-h<digits>", "<name>-p<digits>"
// or "<name>-r".
func ownedName(name, s string) bool {
	rest, ok := strings.CutPrefix(s, name+"-")
	if !ok || rest == "" {
		return false
	}
	if rest == "r" {
		return true
	}
	return (rest[0] == 'n' || rest[0] == 'h' || rest[0] == 'p') && digits(rest[1:])
}

// isLinkSuffix: what follows the name in a root-side link: s<d> (bridge),
// n<d>/h<d> (uplink veths), r<d> (router legs).
func isLinkSuffix(s string) bool {
	return len(s) > 1 && strings.ContainsRune("snhr", rune(s[0])) && digits(s[1:])
}

func digits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// makeCgroup creates a cgroup (relative to the v2 mount).
func makeCgroup(rel string) error {
	mount, err := bpfobj.CgroupV2Mount()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(mount, rel), 0o755); err != nil {
		return fmt.Errorf("cgroup %s: %w", rel, err)
	}
	return nil
}

// Wrap makes cmd (not started yet) run on the node: in its network
// namespace, through nsenter, which changes nothing else (the machine's
// bpffs and cgroup mounts stay in view, unlike `ip netns exec`), and in its
// daemon cgroup, where the node's socket load balancer serves it as it
// serves the node's host processes. Call release after cmd.Start.
func (n Node) Wrap(cmd *exec.Cmd) (release func(), err error) {
	if err := wrapNetns(cmd, n.Netns); err != nil {
		return nil, err
	}
	mount, err := bpfobj.CgroupV2Mount()
	if err != nil {
		return nil, err
	}
	fd, err := syscall.Open(filepath.Join(mount, n.DaemonCgroup), syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open the cgroup of node %s: %w", n.Name, err)
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, fd
	return func() { syscall.Close(fd) }, nil
}

// Wrap makes cmd (not started yet) run in the host's network namespace.
func (h Host) Wrap(cmd *exec.Cmd) error { return wrapNetns(cmd, h.Netns) }

// DialContext connects from inside the host's network namespace (the
// socket is made there; it may be used from any thread after), so that a
// Go client (an http.Transport's DialContext) speaks as that host.
func (h Host) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	var conn net.Conn
	err := InNetns(h.Name, func() error {
		var err error
		conn, err = (&net.Dialer{}).DialContext(ctx, network, address)
		return err
	})
	return conn, err
}

func wrapNetns(cmd *exec.Cmd, path string) error {
	nsenter, err := exec.LookPath("nsenter")
	if err != nil {
		return fmt.Errorf("nsenter (util-linux) is needed to run in a node's network namespace: %w", err)
	}
	if cmd.Err != nil {
		return cmd.Err
	}
	args := append([]string{nsenter, "--net=" + path, "--"}, cmd.Path)
	cmd.Args = append(args, cmd.Args[1:]...)
	cmd.Path = nsenter
	return nil
}

// linkList lists the links, again when the kernel says the dump was
// interrupted (links came or went meanwhile: other tests and nodes make
// and remove veths all the time).
func linkList() ([]netlink.Link, error) {
	var err error
	for range 10 {
		var links []netlink.Link
		if links, err = netlink.LinkList(); !errors.Is(err, netlink.ErrDumpInterrupted) {
			return links, err
		}
	}
	return nil, fmt.Errorf("list links: %w", err)
}
