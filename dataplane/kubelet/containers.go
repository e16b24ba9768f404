package kubelet

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/petrel-project/petrel/dataplane/containerlog"
	"github.com/petrel-project/petrel/dataplane/kubelet/netns"
	"github.com/petrel-project/petrel/dataplane/kubelet/podenv"
	"github.com/petrel-project/petrel/dataplane/runtime"
)

// Restart back-off, as the kubelet's: the first restart is at once, then
// 10 s doubling to 5 min, counted from when the run ended; reset after a
// run of 10 min.
const (
	backoffInitial = 10 * time.Second
	backoffMax     = 5 * time.Minute
	backoffReset   = 10 * time.Minute
)

// containerRecord is what the kubelet keeps of a container across its
// restarts.
type containerRecord struct {
	restarts int32
	// lastTerm is how the previous run ended (lastState).
	lastTerm *corev1.ContainerStateTerminated
	// failedStart is a run that never started (the command is missing, say):
	// there is no container to show for it.
	failedStart *corev1.ContainerStateTerminated
	// waiting explains why there is no container (image missing, bad config).
	waiting *corev1.ContainerStateWaiting
	// backoff is the wait between the end of the next run and its restart;
	// nextStart is when the run that ended (endedRun) may run again.
	backoff   time.Duration
	nextStart time.Time
	endedRun  string
	// retry paces attempts that made no run at all (an image that could not
	// be had, a config that could not be made); a pull that failed is not
	// tried again before retryAt.
	retry   time.Duration
	retryAt time.Time
	// prefetch is the image got for the next start while the pod's
	// sandbox was made.
	prefetch *prefetched
}

func (ps *podState) record(name string) *containerRecord {
	r := ps.containers[name]
	if r == nil {
		r = &containerRecord{}
		ps.containers[name] = r
	}
	return r
}

// policyOf is the restart policy of a container: init containers of an
// Always pod restart only on failure.
func policyOf(pod *corev1.Pod, isInit bool) corev1.RestartPolicy {
	if isInit && (pod.Spec.RestartPolicy == corev1.RestartPolicyAlways || pod.Spec.RestartPolicy == "") {
		return corev1.RestartPolicyOnFailure
	}
	return pod.Spec.RestartPolicy
}

// restartable says whether a container that ended with code runs again.
func restartable(policy corev1.RestartPolicy, code int32) bool {
	return policy == corev1.RestartPolicyAlways || policy == "" || (policy == corev1.RestartPolicyOnFailure && code != 0)
}

// syncRunning sets up the pod's sandbox and volumes, runs its init
// containers in order and then its containers, and reports its status.
func (k *Kubelet) syncRunning(ctx context.Context, pod *corev1.Pod, ps *podState) (time.Duration, error) {
	uid := string(pod.UID)
	dir := k.podDir(uid)
	if err := os.MkdirAll(filepath.Join(dir, "logs"), 0o755); err != nil {
		return 0, err
	}
	// Volumes (API reads: ConfigMaps, Secrets, the service account token)
	// do not need the network, so they are made while the sandbox is.
	var vols map[string]string
	var volErr error
	volsDone := make(chan struct{})
	go func() {
		defer close(volsDone)
		vols, volErr = k.volumes(ctx, pod, dir)
	}()
	imagesDone := k.prefetchImages(ctx, pod, ps, dir)
	sb, err := k.ensureSandbox(ctx, pod, dir)
	<-volsDone
	imagesDone()
	if err != nil {
		for _, rec := range ps.containers {
			rec.prefetch = nil // got for a start that is not happening now
		}
		k.recorder.Eventf(pod, corev1.EventTypeWarning, "FailedCreatePodSandBox", "Failed to create pod sandbox: %v", err)
		return 0, err
	}
	var requeue time.Duration
	soonest := func(d time.Duration) {
		if d > 0 && (requeue == 0 || d < requeue) {
			requeue = d
		}
	}
	err = volErr
	if err == nil {
		err = k.podFiles(pod, dir, sb.IP)
	}
	var mountErr errMount
	if errors.As(err, &mountErr) {
		k.recorder.Eventf(pod, corev1.EventTypeWarning, "FailedMount", "MountVolume.SetUp failed: %v", err)
		soonest(5 * time.Second)
	} else if err != nil {
		return 0, err
	}
	// What this sync leaves as it found (running, or an init container
	// done) is not asked of containerd again for the status.
	unchanged := map[string]observed{}
	if err == nil {
		initDone := true
		for i := range pod.Spec.InitContainers {
			c := &pod.Spec.InitContainers[i]
			st := k.observe(ctx, uid, c.Name)
			if st.exited && st.state.ExitCode == 0 {
				unchanged[c.Name] = st
				continue
			}
			initDone = false
			if st.running {
				unchanged[c.Name] = st
			}
			soonest(k.ensureContainer(ctx, pod, ps, sb, vols, c, st, policyOf(pod, true)))
			break
		}
		if initDone {
			for i := range pod.Spec.Containers {
				c := &pod.Spec.Containers[i]
				st := k.observe(ctx, uid, c.Name)
				if st.running {
					unchanged[c.Name] = st
				}
				soonest(k.ensureContainer(ctx, pod, ps, sb, vols, c, st, pod.Spec.RestartPolicy))
			}
			soonest(k.syncEphemeral(ctx, pod, ps, sb, vols, unchanged))
		}
	}
	if err := k.updateStatus(ctx, pod, ps, sb, mountErr.err, unchanged); err != nil {
		return 0, err
	}
	return requeue, nil
}

// ensureSandbox gives the pod its network namespace and address, once.
func (k *Kubelet) ensureSandbox(ctx context.Context, pod *corev1.Pod, dir string) (sandbox, error) {
	record := filepath.Join(dir, "sandbox.json")
	var sb sandbox
	if b, err := os.ReadFile(record); err == nil && json.Unmarshal(b, &sb) == nil {
		return sb, nil
	}
	sb = sandbox{UID: string(pod.UID), Namespace: pod.Namespace, Name: pod.Name}
	if pod.Spec.HostNetwork {
		sb.IP = k.hostIP
	} else {
		sb.NetNS = netns.Path(sb.UID)
		// Left over from a crash midway: start again from nothing.
		if err := k.network.del(ctx, sb); err != nil {
			return sb, err
		}
		if err := netns.Remove(sb.NetNS); err != nil {
			return sb, err
		}
		if err := netns.New(sb.NetNS); err != nil {
			return sb, err
		}
		ip, err := k.network.add(ctx, pod, sb.NetNS)
		if err != nil {
			return sb, err
		}
		sb.IP = ip
	}
	b, _ := json.Marshal(sb)
	if err := os.WriteFile(record+".tmp", b, 0o644); err != nil {
		return sb, err
	}
	return sb, os.Rename(record+".tmp", record)
}

// observed is a container as containerd has it.
type observed struct {
	ctr     containerd.Container
	labels  map[string]string
	state   runtime.TaskState
	running bool
	exited  bool
	// err says containerd could not be asked (a busy shim, a timeout): the
	// container may well be running, so nothing may be decided on it.
	err error
}

func (k *Kubelet) observe(ctx context.Context, uid, name string) observed {
	ctrs, err := k.runtime.Containers(ctx, fmt.Sprintf(`labels."%s"=="%s",labels."%s"=="%s"`, labelPodUID, uid, labelContainer, name))
	if err != nil {
		return observed{err: fmt.Errorf("list the containers of %s: %w", name, err)}
	}
	if len(ctrs) == 0 {
		return observed{}
	}
	// The latest run, should an older one not be gone yet.
	var o observed
	latest := -1
	for _, c := range ctrs {
		labels, err := labelsOf(ctx, c)
		if err != nil {
			continue
		}
		if n, _ := strconv.Atoi(labels[labelRestarts]); n > latest {
			latest, o.ctr, o.labels = n, c, labels
		}
	}
	if o.ctr == nil {
		return observed{}
	}
	ctr := o.ctr
	if o.state, err = runtime.State(ctx, ctr); err != nil {
		o.err = fmt.Errorf("read the task of container %s: %w", name, err)
		return o
	}
	o.running = o.state.Running
	o.exited = o.state.Exists && !o.state.Running
	return o
}

// lost says the container ran and its task is gone, deleted before the
// kubelet saw how it ended: the run is over, its exit unknown.
func (o observed) lost() bool {
	return o.ctr != nil && o.err == nil && !o.state.Exists && o.labels[labelStartedAt] != ""
}

// labelsOf reads a container's labels from the record a list just
// returned, without another round trip to containerd.
func labelsOf(ctx context.Context, c containerd.Container) (map[string]string, error) {
	info, err := c.Info(ctx, containerd.WithoutRefreshedMetadata)
	return info.Labels, err
}

// terminated describes how an observed container's run ended.
func (o observed) terminated() *corev1.ContainerStateTerminated {
	t := &corev1.ContainerStateTerminated{ExitCode: int32(o.state.ExitCode), FinishedAt: metav1.NewTime(o.state.ExitedAt),
		ContainerID: "containerd://" + o.ctr.ID(), Reason: "Error"}
	if at, err := time.Parse(time.RFC3339Nano, o.labels[labelStartedAt]); err == nil {
		t.StartedAt = metav1.NewTime(at)
	}
	switch {
	case o.lost():
		// As the kubelet reports a container it cannot find.
		t.ExitCode, t.Reason = 137, "ContainerStatusUnknown"
		t.Message = "The container's process was gone before its exit was seen"
	case o.labels[labelOOM] == "true":
		t.Reason = "OOMKilled"
	case t.ExitCode == 0:
		t.Reason = "Completed"
	}
	return t
}

func terminationFile(podDir, name string, run int32) string {
	return filepath.Join(podDir, "termination", name, fmt.Sprintf("%d", run))
}

// maxTerminationMessage bounds a termination message, as Kubernetes does.
const maxTerminationMessage = 4096

// logSettle is how long after a container's exit its log is taken as
// complete for a FallbackToLogsOnError termination message.
const logSettle = 200 * time.Millisecond

// terminated is how a run ended, with the container's termination message:
// what it wrote to terminationMessagePath, or with FallbackToLogsOnError
// and nothing written, the end of its log when it failed.
func (k *Kubelet) terminated(pod *corev1.Pod, c *corev1.Container, o observed) *corev1.ContainerStateTerminated {
	t := o.terminated()
	run, _ := strconv.Atoi(o.labels[labelRestarts])
	dir := k.podDir(string(pod.UID))
	if b, err := os.ReadFile(terminationFile(dir, c.Name, int32(run))); err == nil && len(b) > 0 {
		if len(b) > maxTerminationMessage {
			b = b[:maxTerminationMessage]
		}
		t.Message = string(b)
		return t
	}
	if c.TerminationMessagePolicy == corev1.TerminationMessageFallbackToLogsOnError && t.ExitCode != 0 {
		// containerd reports the exit as soon as the process is gone; the
		// logger may still be writing the output's last piece (a line
		// without a newline is only written when the pipe closes).
		if wait := logSettle - time.Since(t.FinishedAt.Time); wait > 0 && !t.FinishedAt.IsZero() {
			time.Sleep(wait)
		}
		var buf bytes.Buffer
		path := filepath.Join(dir, "logs", c.Name, fmt.Sprintf("%d.log", run))
		if err := containerlog.Read(context.Background(), path, &buf, containerlog.Options{TailLines: 80}); err == nil {
			b := buf.Bytes()
			if len(b) > 2048 {
				b = b[len(b)-2048:]
			}
			t.Message = string(b)
		}
	}
	return t
}

// ensureContainer starts the container, or restarts it when its run ended
// and the restart policy says so, honouring the back-off; it returns how
// long until it should be looked at again.
func (k *Kubelet) ensureContainer(ctx context.Context, pod *corev1.Pod, ps *podState, sb sandbox, vols map[string]string, c *corev1.Container, o observed, policy corev1.RestartPolicy) time.Duration {
	if o.err != nil {
		// Taken for "created, never started", this once removed a running
		// container and started it again uncounted.
		slog.Warn("kubelet: container state unknown; looking again", "pod", pod.Namespace+"/"+pod.Name, "err", o.err)
		return time.Second
	}
	rec := ps.record(c.Name)
	if o.ctr != nil && rec.restarts == 0 {
		// Adopted after a node restart: the count lives on the container.
		if n, err := strconv.Atoi(o.labels[labelRestarts]); err == nil {
			rec.restarts = int32(n)
		}
	}
	var ended *corev1.ContainerStateTerminated
	switch {
	case o.running:
		return 0
	case o.exited || o.lost():
		// A run that ended, whoever deleted its task: a restart to count.
		ended = k.terminated(pod, c, o)
	case o.ctr != nil:
		// Created but never started (a crash in between): start afresh.
		if err := runtime.RemoveContainer(ctx, o.ctr, 0); err != nil {
			return time.Second
		}
	case rec.failedStart != nil:
		ended = rec.failedStart
	}
	if ended != nil {
		if !restartable(policy, ended.ExitCode) {
			return 0
		}
		if wait := restartWait(rec, ended, time.Now()); wait > 0 {
			return wait
		}
		if o.ctr != nil {
			if err := runtime.RemoveContainer(ctx, o.ctr, 0); err != nil {
				return time.Second
			}
			if n, err := strconv.Atoi(o.labels[labelRestarts]); err == nil {
				_ = os.RemoveAll(ioDir(k.podDir(string(pod.UID)), c.Name, int32(n)))
			}
		}
		rec.lastTerm, rec.failedStart = ended, nil
		rec.restarts++
		rec.backoff = nextBackoff(rec.backoff)
	}
	if w := rec.waiting; w != nil && (w.Reason == "ErrImagePull" || w.Reason == "ImagePullBackOff") {
		// Pulls back off as the kubelet's do, however often the pod is
		// synced: each try costs the registry's timeouts.
		if wait := time.Until(rec.retryAt); wait > 0 {
			k.recorder.Eventf(pod, corev1.EventTypeNormal, "BackOff", "Back-off pulling image %q", c.Image)
			if w.Reason == "ErrImagePull" {
				rec.waiting = &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff",
					Message: fmt.Sprintf("Back-off pulling image %q: %s", c.Image, w.Message)}
			}
			return wait
		}
	}
	if err := k.startContainer(ctx, pod, sb, vols, c, rec); err != nil {
		var notPresent bool
		var cfgErr errConfig
		var mountErr errMount
		switch {
		case errors.Is(err, runtime.ErrImageNotPresent) && c.ImagePullPolicy == corev1.PullNever:
			notPresent = true
			rec.waiting = &corev1.ContainerStateWaiting{Reason: "ErrImageNeverPull",
				Message: fmt.Sprintf("Container image %q is not present with pull policy of Never", c.Image)}
		case errors.As(err, &cfgErr):
			rec.waiting = &corev1.ContainerStateWaiting{Reason: "CreateContainerConfigError", Message: err.Error()}
		case errors.As(err, &mountErr):
			rec.waiting = &corev1.ContainerStateWaiting{Reason: "CreateContainerError", Message: err.Error()}
		case errors.Is(err, errPull):
			rec.waiting = &corev1.ContainerStateWaiting{Reason: "ErrImagePull", Message: err.Error()}
		default:
			// It was made but would not run: a run that ended at once.
			now := metav1.Now()
			rec.waiting = nil
			rec.failedStart = &corev1.ContainerStateTerminated{ExitCode: 128, Reason: "StartError", Message: err.Error(), StartedAt: now, FinishedAt: now}
		}
		if notPresent {
			k.recorder.Eventf(pod, corev1.EventTypeWarning, "ErrImageNeverPull", "Container image %q is not present with pull policy of Never", c.Image)
		} else {
			k.recorder.Eventf(pod, corev1.EventTypeWarning, "Failed", "Error: %v", err)
		}
		if rec.failedStart != nil {
			// The next sync restarts it after the back-off from now.
			return time.Second
		}
		if rec.waiting.Reason == "ErrImagePull" {
			rec.retry = nextBackoff(rec.retry)
			rec.retryAt = time.Now().Add(rec.retry)
			return rec.retry
		}
		wait := rec.retry
		rec.retry = nextBackoff(rec.retry)
		return max(wait, time.Second)
	}
	rec.waiting, rec.retry = nil, 0
	return 0
}

// restartWait is how long the run that ended must wait before it runs
// again: the back-off counts from the end of the run, as the kubelet's
// does, so a run that a liveness probe kills only after a long grace period
// is still held back.
func restartWait(rec *containerRecord, ended *corev1.ContainerStateTerminated, now time.Time) time.Duration {
	run := ended.ContainerID + "@" + ended.FinishedAt.UTC().Format(time.RFC3339Nano)
	if rec.endedRun != run {
		rec.endedRun = run
		if ended.FinishedAt.Sub(ended.StartedAt.Time) > backoffReset {
			rec.backoff = 0
		}
		finished := ended.FinishedAt.Time
		if finished.IsZero() {
			// A lost run: its end is when the kubelet noticed it.
			finished = now
		}
		rec.nextStart = finished.Add(rec.backoff)
	}
	return rec.nextStart.Sub(now)
}

// nextBackoff doubles a back-off from backoffInitial up to backoffMax.
func nextBackoff(d time.Duration) time.Duration {
	if d == 0 {
		return backoffInitial
	}
	return min(2*d, backoffMax)
}

var errPull = errors.New("image pull failed")

// startContainer creates and starts one container of the pod.
func (k *Kubelet) startContainer(ctx context.Context, pod *corev1.Pod, sb sandbox, vols map[string]string, c *corev1.Container, rec *containerRecord) error {
	uid := string(pod.UID)
	img, err := k.takeImage(ctx, pod, c, rec)
	if err != nil {
		if errors.Is(err, runtime.ErrImageNotPresent) {
			return err
		}
		return fmt.Errorf("%w: %v", errPull, err)
	}
	ociName, ociPath, ociSpec, err := k.ociRuntime(ctx, pod)
	if err != nil {
		return err
	}
	env, vars, err := k.env(ctx, pod, c, sb.IP)
	if err != nil {
		return err
	}
	dir := k.podDir(uid)
	mnts, err := mounts(c, dir, vols, vars)
	if err != nil {
		return err
	}
	pidNS, err := k.targetPIDNamespace(ctx, pod, c.Name)
	if err != nil {
		return err
	}
	logDir := filepath.Join(dir, "logs", c.Name)
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return err
	}
	logPath := filepath.Join(logDir, fmt.Sprintf("%d.log", rec.restarts))
	if c.TerminationMessagePath != "" {
		// A file per run the container may write its last words to.
		msgPath := terminationFile(dir, c.Name, rec.restarts)
		if err := os.MkdirAll(filepath.Dir(msgPath), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(msgPath, nil, 0o666); err != nil {
			return err
		}
		_ = os.Chmod(msgPath, 0o666)
		mnts = append(mnts, specs.Mount{Destination: c.TerminationMessagePath, Type: "bind", Source: msgPath, Options: []string{"rbind", "rprivate", "rw"}})
	}
	cfg := runtime.ContainerConfig{
		ID: containerID(uid, c.Name, rec.restarts), Image: img,
		Labels: map[string]string{labelPodUID: uid, labelPodName: pod.Name, labelPodNamespace: pod.Namespace,
			labelContainer: c.Name, labelRestarts: strconv.Itoa(int(rec.restarts)), labelLog: logPath, labelOCIRuntime: ociName},
		Command: podenv.ExpandAll(c.Command, vars), Args: podenv.ExpandAll(c.Args, vars), Env: env, WorkingDir: c.WorkingDir,
		Hostname: podHostname(pod), NetNS: sb.NetNS, PIDNS: pidNS, Mounts: mnts,
		CgroupsPath: "/" + filepath.Join(k.cfg.CgroupRoot, "pod"+uid, c.Name),
		TTY:         c.TTY,
		Sysctls:     podSysctls(pod),
		OCIRuntime:  ociPath, OCISpecVersion: ociSpec,
	}
	if pod.Spec.HostNetwork {
		cfg.Hostname = ""
	}
	if q, ok := c.Resources.Limits[corev1.ResourceMemory]; ok {
		cfg.MemoryLimit = q.Value()
	}
	if q, ok := c.Resources.Requests[corev1.ResourceCPU]; ok {
		cfg.CPUShares = uint64(max(2, q.MilliValue()*1024/1000))
	}
	if q, ok := c.Resources.Limits[corev1.ResourceCPU]; ok {
		cfg.CPUQuota = max(1000, q.MilliValue()*100)
	}
	if sc := pod.Spec.SecurityContext; sc != nil {
		cfg.UID, cfg.GID = sc.RunAsUser, sc.RunAsGroup
	}
	if sc := c.SecurityContext; sc != nil {
		if sc.RunAsUser != nil {
			cfg.UID = sc.RunAsUser
		}
		if sc.RunAsGroup != nil {
			cfg.GID = sc.RunAsGroup
		}
		cfg.ReadOnlyRootfs = sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem
		cfg.Privileged = sc.Privileged != nil && *sc.Privileged
		// As Kubernetes: no_new_privs only when escalation is refused.
		cfg.NoNewPrivileges = sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation
		if caps := sc.Capabilities; caps != nil {
			for _, c := range caps.Add {
				cfg.CapAdd = append(cfg.CapAdd, string(c))
			}
			for _, c := range caps.Drop {
				cfg.CapDrop = append(cfg.CapDrop, string(c))
			}
		}
	}
	ctr, err := runtime.CreateContainer(ctx, k.runtime, cfg)
	if err != nil {
		return err
	}
	if ociName != "" {
		k.recorder.Eventf(pod, corev1.EventTypeNormal, "Created", "Created container %s (OCI runtime %s)", c.Name, ociName)
	} else {
		k.recorder.Eventf(pod, corev1.EventTypeNormal, "Created", "Created container %s", c.Name)
	}
	started := time.Now()
	tio := runtime.TaskIO{Logger: k.loggerPath, LogPath: logPath, Dir: ioDir(dir, c.Name, rec.restarts), Stdin: c.Stdin, TTY: c.TTY}
	if _, err := runtime.StartLoggedTask(ctx, ctr, tio); err != nil {
		_ = runtime.RemoveContainer(ctx, ctr, 0)
		return err
	}
	if _, err := ctr.SetLabels(ctx, map[string]string{labelStartedAt: started.UTC().Format(time.RFC3339Nano)}); err != nil && !errdefs.IsNotFound(err) {
		return err
	}
	k.recorder.Eventf(pod, corev1.EventTypeNormal, "Started", "Started container %s", c.Name)
	if c.Lifecycle != nil && c.Lifecycle.PostStart != nil {
		if err := k.runHandler(ctx, pod, sb, c, ctr, c.Lifecycle.PostStart, 30*time.Second); err != nil {
			k.recorder.Eventf(pod, corev1.EventTypeWarning, "FailedPostStartHook", "PostStartHook failed: %v", err)
			// Killed, not deleted: the sync loop sees the run end and
			// restarts it as a counted, backed-off restart.
			return runtime.KillTask(ctx, ctr, 2*time.Second)
		}
	}
	return nil
}

// ioDir holds the named pipes and attach socket of one run of a container.
func ioDir(podDir, container string, restarts int32) string {
	return filepath.Join(podDir, "io", fmt.Sprintf("%s-%d", container, restarts))
}

// runPreStop runs the preStop hooks of the pod's running containers, in
// parallel, within the grace period.
func (k *Kubelet) runPreStop(ctx context.Context, pod *corev1.Pod, grace time.Duration) {
	sbBytes, _ := os.ReadFile(filepath.Join(k.podDir(string(pod.UID)), "sandbox.json"))
	var sb sandbox
	_ = json.Unmarshal(sbBytes, &sb)
	done := make(chan struct{}, len(pod.Spec.Containers))
	n := 0
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		if c.Lifecycle == nil || c.Lifecycle.PreStop == nil {
			continue
		}
		o := k.observe(ctx, string(pod.UID), c.Name)
		if !o.running {
			continue
		}
		n++
		go func() {
			defer func() { done <- struct{}{} }()
			if err := k.runHandler(ctx, pod, sb, c, o.ctr, c.Lifecycle.PreStop, grace); err != nil {
				k.recorder.Eventf(pod, corev1.EventTypeWarning, "FailedPreStopHook", "PreStopHook failed: %v", err)
			}
		}()
	}
	for ; n > 0; n-- {
		<-done
	}
}
