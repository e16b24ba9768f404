package kubelet

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	corev1 "k8s.io/api/core/v1"

	"github.com/petrel-project/petrel/dataplane/kubelet/probe"
	"github.com/petrel-project/petrel/dataplane/runtime"
)

// prober runs one container run's startup, readiness and liveness probes.
type prober struct {
	cancel context.CancelFunc
	// run is the container's start time: a restarted container gets a new
	// prober that starts unready.
	run     string
	mu      sync.Mutex
	started bool
	ready   bool
}

func (p *prober) stop() { p.cancel() }

func (p *prober) results() (started, ready bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.started, p.ready
}

// ensureProber starts the probes of a running container's current run, or
// returns the prober already at work on it; nil when it has no probes.
func (k *Kubelet) ensureProber(ctx context.Context, pod *corev1.Pod, ps *podState, sb sandbox, c *corev1.Container, o observed) *prober {
	if c.StartupProbe == nil && c.ReadinessProbe == nil && c.LivenessProbe == nil {
		return nil
	}
	run := o.labels[labelStartedAt]
	k.mu.Lock()
	defer k.mu.Unlock()
	if p := ps.probes[c.Name]; p != nil {
		if p.run == run {
			return p
		}
		p.stop()
	}
	pctx, cancel := context.WithCancel(ctx)
	p := &prober{cancel: cancel, run: run, started: c.StartupProbe == nil}
	ps.probes[c.Name] = p
	go k.probeLoop(pctx, pod, sb, c, o.ctr, p)
	return p
}

func (k *Kubelet) probeLoop(ctx context.Context, pod *corev1.Pod, sb sandbox, c *corev1.Container, ctr containerd.Container, p *prober) {
	uid := string(pod.UID)
	changed := func() { k.queue.Add(uid) }
	if c.StartupProbe != nil {
		if !k.probeUntil(ctx, pod, sb, c, ctr, "Startup", c.StartupProbe, nil) {
			return
		}
		p.mu.Lock()
		p.started = true
		p.mu.Unlock()
		changed()
	}
	if c.ReadinessProbe != nil {
		go k.probeUntil(ctx, pod, sb, c, ctr, "Readiness", c.ReadinessProbe, func(ok bool) {
			p.mu.Lock()
			was := p.ready
			p.ready = ok
			p.mu.Unlock()
			if was != ok {
				changed()
			}
		})
	} else {
		p.mu.Lock()
		p.ready = true
		p.mu.Unlock()
		changed()
	}
	if c.LivenessProbe != nil {
		k.probeUntil(ctx, pod, sb, c, ctr, "Liveness", c.LivenessProbe, nil)
	}
}

// probeUntil probes every period. A readiness probe reports each settled
// result and never ends; a startup probe returns true on its first
// success; startup and liveness probes that fail failureThreshold times in
// a row kill the container (its restart policy then applies) and return
// false.
func (k *Kubelet) probeUntil(ctx context.Context, pod *corev1.Pod, sb sandbox, c *corev1.Container, ctr containerd.Container, kind string, pr *corev1.Probe, report func(bool)) bool {
	period := time.Duration(max(pr.PeriodSeconds, 1)) * time.Second
	timeout := time.Duration(max(pr.TimeoutSeconds, 1)) * time.Second
	success, failure := max(pr.SuccessThreshold, 1), max(pr.FailureThreshold, 1)
	select {
	case <-ctx.Done():
		return false
	case <-time.After(time.Duration(pr.InitialDelaySeconds) * time.Second):
	}
	var oks, fails int32
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		err := k.act(ctx, pod, sb, c, ctr, pr.Exec, pr.HTTPGet, pr.TCPSocket, pr.GRPC, timeout)
		if ctx.Err() != nil {
			return false
		}
		if err == nil {
			oks, fails = oks+1, 0
			if kind == "Startup" {
				return true
			}
			if oks >= success && report != nil {
				report(true)
			}
		} else {
			oks, fails = 0, fails+1
			k.recorder.Eventf(pod, corev1.EventTypeWarning, "Unhealthy", "%s probe failed: %v", kind, err)
			if fails >= failure {
				if report != nil {
					report(false)
				} else {
					grace := 30 * time.Second
					if pr.TerminationGracePeriodSeconds != nil {
						grace = time.Duration(*pr.TerminationGracePeriodSeconds) * time.Second
					} else if pod.Spec.TerminationGracePeriodSeconds != nil {
						grace = time.Duration(*pod.Spec.TerminationGracePeriodSeconds) * time.Second
					}
					k.recorder.Eventf(pod, corev1.EventTypeNormal, "Killing", "Container %s failed %s probe, will be restarted", c.Name, kind)
					// The task stays, stopped, so that the sync loop reads
					// how the run ended and counts the restart; deleting it
					// made the container look never started and restarted
					// it at once, uncounted.
					if err := runtime.KillTask(ctx, ctr, grace); err != nil && ctx.Err() == nil {
						slog.Warn("kubelet: liveness kill failed", "pod", pod.Namespace+"/"+pod.Name, "container", c.Name, "err", err)
					}
					return false
				}
			}
		}
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
}

// runHandler runs a lifecycle hook.
func (k *Kubelet) runHandler(ctx context.Context, pod *corev1.Pod, sb sandbox, c *corev1.Container, ctr containerd.Container, h *corev1.LifecycleHandler, timeout time.Duration) error {
	if h.Sleep != nil {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(min(time.Duration(h.Sleep.Seconds)*time.Second, timeout)):
			return nil
		}
	}
	return k.act(ctx, pod, sb, c, ctr, h.Exec, h.HTTPGet, h.TCPSocket, nil, timeout)
}

// act performs one probe or hook action; nil means it succeeded.
func (k *Kubelet) act(ctx context.Context, pod *corev1.Pod, sb sandbox, c *corev1.Container, ctr containerd.Container,
	exec *corev1.ExecAction, get *corev1.HTTPGetAction, tcp *corev1.TCPSocketAction, grpcAction *corev1.GRPCAction, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	switch {
	case exec != nil:
		var out bytes.Buffer
		code, err := runtime.Exec(ctx, ctr, exec.Command, runtime.ExecIO{Stdout: &out, Stderr: &out})
		if err != nil {
			return fmt.Errorf("exec %v: %w", exec.Command, err)
		}
		if code != 0 {
			return fmt.Errorf("command %v exited with %d: %s", exec.Command, code, bytes.TrimSpace(out.Bytes()))
		}
		return nil
	case get != nil:
		return probe.HTTPGet(ctx, get, c, sb.IP)
	case tcp != nil:
		return probe.TCP(ctx, tcp, c, sb.IP)
	case grpcAction != nil:
		return probe.GRPC(ctx, grpcAction, sb.IP)
	}
	return fmt.Errorf("the probe or hook names no action")
}
