// Package podvolume is the host side of a pod's volumes: emptyDir
// directories and tmpfs mounts, hostPath checks, volume files replaced
// atomically and pruned as their objects change, and the unmounting of what
// a pod left. What goes into the files (ConfigMaps, Secrets, tokens) is the
// kubelet's business; this package only puts it on disk safely.
package podvolume

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
)

// MismatchError is a hostPath volume whose path is not what its type says
// (a directory, a file): the pod waits until it is.
type MismatchError struct {
	Path, Want string
}

func (e *MismatchError) Error() string { return fmt.Sprintf("hostPath %s is not a %s", e.Path, e.Want) }

// EmptyDir makes an emptyDir volume at p: a directory anyone in the pod
// may write, or for medium Memory a tmpfs (of sizeLimit, when set).
func EmptyDir(p string, v *corev1.EmptyDirVolumeSource) error {
	if err := os.MkdirAll(p, 0o777); err != nil {
		return err
	}
	if err := os.Chmod(p, 0o777); err != nil {
		return err
	}
	if v.Medium != corev1.StorageMediumMemory || IsMountPoint(p) {
		return nil
	}
	opts := "mode=0777"
	if v.SizeLimit != nil && !v.SizeLimit.IsZero() {
		opts += ",size=" + strconv.FormatInt(v.SizeLimit.Value(), 10)
	}
	if err := unix.Mount("tmpfs", p, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
		return fmt.Errorf("mount tmpfs for emptyDir %s: %w", p, err)
	}
	return nil
}

// HostPath checks a hostPath volume against its type, making the directory
// or file for the OrCreate types; a path of the wrong kind is a
// *MismatchError.
func HostPath(v *corev1.HostPathVolumeSource) error {
	t := corev1.HostPathUnset
	if v.Type != nil {
		t = *v.Type
	}
	fi, err := os.Stat(v.Path)
	switch t {
	case corev1.HostPathDirectoryOrCreate:
		if os.IsNotExist(err) {
			return os.MkdirAll(v.Path, 0o755)
		}
	case corev1.HostPathFileOrCreate:
		if os.IsNotExist(err) {
			if err := os.MkdirAll(filepath.Dir(v.Path), 0o755); err != nil {
				return err
			}
			return os.WriteFile(v.Path, nil, 0o644)
		}
	case corev1.HostPathDirectory:
		if err != nil || !fi.IsDir() {
			return &MismatchError{Path: v.Path, Want: "directory"}
		}
	case corev1.HostPathFile:
		if err != nil || !fi.Mode().IsRegular() {
			return &MismatchError{Path: v.Path, Want: "file"}
		}
	}
	return nil
}

// Prune removes from a volume the files its sources no longer hold (a
// key removed, an optional ConfigMap or Secret deleted), then the
// directories that leaves empty: the volume shows what its objects hold now.
func Prune(dir string, keep map[string]bool) error {
	var dirs []string
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		switch {
		case err != nil:
			return err
		case d.IsDir():
			if path != dir {
				dirs = append(dirs, path)
			}
		case !keep[path]:
			if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("prune volume %s: %w", dir, err)
	}
	// Deepest first; a directory still holding files stays.
	for i := len(dirs) - 1; i >= 0; i-- {
		_ = os.Remove(dirs[i])
	}
	return nil
}

// ReplaceFile puts body at path when it differs from what is there, by a
// rename, so that a container reading the volume sees the old file or the
// new one, never a half-written one. ConfigMap and Secret volumes follow
// their objects this way, at each sync of the pod.
func ReplaceFile(path string, body []byte, mode os.FileMode) error {
	if st, err := os.Stat(path); err == nil && st.Mode().Perm() == mode.Perm() {
		if old, err := os.ReadFile(path); err == nil && string(old) == string(body) {
			return nil
		}
	}
	tmp := filepath.Join(filepath.Dir(path), ".."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, body, mode); err != nil {
		return err
	}
	if err := os.Chmod(tmp, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// IsMountPoint says whether p is the root of a mount.
func IsMountPoint(p string) bool {
	var st, parent unix.Stat_t
	if unix.Lstat(p, &st) != nil || unix.Lstat(filepath.Dir(p), &parent) != nil {
		return false
	}
	return st.Dev != parent.Dev
}

// UnmountUnder unmounts every mount below dir (memory emptyDirs), deepest
// first, before the directory is removed.
func UnmountUnder(dir string) error {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	var points []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			points = append(points, f[4])
		}
	}
	for i := len(points) - 1; i >= 0; i-- {
		if err := unix.Unmount(points[i], unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("unmount %s: %w", points[i], err)
		}
	}
	return nil
}

//END
