package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	corev1helpers "k8s.io/component-helpers/scheduling/corev1"
	"k8s.io/klog/v2"

	"github.com/petrel-project/petrel/test/cluster"
)

// TestSchedulerPlacementsAreValid schedules a mixed load (requests of many
// sizes, node selectors, a tainted node and pods that tolerate it, host
// ports) onto nodes of different sizes, then checks every placement against
// the rules the scheduler must keep, and that every pod left pending says
// why.
func TestSchedulerPlacementsAreValid(t *testing.T) {
	s := cluster.StartServer(t, "--node-monitor-grace-period", "10m")
	allowPrivileged(t, s, "default") // pods with host ports
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cs := s.Clientset()

	type nodeSpec struct {
		cpu    string
		labels map[string]string
		taints []corev1.Taint
	}
	specs := []nodeSpec{
		{"2", map[string]string{"zone": "a"}, nil},
		{"2", map[string]string{"zone": "b"}, nil},
		{"4", map[string]string{"zone": "a"}, nil},
		{"4", map[string]string{"zone": "c", "disk": "ssd"}, nil},
		{"8", map[string]string{"zone": "b", "disk": "ssd"}, nil},
		{"8", map[string]string{"zone": "c", "disk": "ssd"}, []corev1.Taint{{Key: "dedicated", Value: "gpu", Effect: corev1.TaintEffectNoSchedule}}},
	}
	for i, sp := range specs {
		name := fmt.Sprintf("mix-%d", i)
		lbls := map[string]string{corev1.LabelHostname: name}
		for k, v := range sp.labels {
			lbls[k] = v
		}
		n, err := cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: lbls},
			Spec: corev1.NodeSpec{Taints: sp.taints}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		alloc := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(sp.cpu), corev1.ResourceMemory: resource.MustParse("8Gi"),
			corev1.ResourcePods: resource.MustParse("20")}
		// A patch, as a kubelet reports: the node IPAM controller writes the
		// new node's podCIDR at the same moment, and an update would conflict.
		st, _ := json.Marshal(map[string]any{"status": corev1.NodeStatus{Capacity: alloc, Allocatable: alloc,
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastHeartbeatTime: metav1.Now()}}}})
		if _, err := cs.CoreV1().Nodes().Patch(ctx, n.Name, types.MergePatchType, st, metav1.PatchOptions{}, "status"); err != nil {
			t.Fatal(err)
		}
	}

	rng := rand.New(rand.NewSource(7))
	const pods = 60
	for i := range pods {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("mix-%d", i), Labels: map[string]string{"mix": "yes"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "petrel.local/testserver:1",
				Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
					corev1.ResourceCPU: *resource.NewMilliQuantity(int64(100+rng.Intn(15)*100), resource.DecimalSI)}}}}}}
		switch rng.Intn(5) {
		case 0:
			p.Spec.NodeSelector = map[string]string{"disk": "ssd"}
		case 1:
			p.Spec.Tolerations = []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "gpu", Effect: corev1.TaintEffectNoSchedule}}
		case 2:
			p.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 80, HostPort: 8080}}
		}
		if _, err := cs.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	var list *corev1.PodList
	poll(t, "every pod placed or marked unschedulable", 60*time.Second, func() error {
		var err error
		list, err = cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "mix=yes"})
		if err != nil {
			return err
		}
		for _, p := range list.Items {
			if p.Spec.NodeName != "" {
				continue
			}
			unschedulable := false
			for _, c := range p.Status.Conditions {
				if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
					unschedulable = true
				}
			}
			if !unschedulable {
				return fmt.Errorf("pod %s neither bound nor unschedulable", p.Name)
			}
		}
		return nil
	})

	nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]corev1.Node{}
	for _, n := range nodes.Items {
		byName[n.Name] = n
	}
	used := map[string]int64{}
	ports := map[string]int{}
	bound := 0
	for _, p := range list.Items {
		if p.Spec.NodeName == "" {
			continue
		}
		bound++
		n := byName[p.Spec.NodeName]
		for k, v := range p.Spec.NodeSelector {
			if n.Labels[k] != v {
				t.Errorf("%s on %s breaks its selector %s=%s", p.Name, n.Name, k, v)
			}
		}
		if taint, bad := corev1helpers.FindMatchingUntoleratedTaint(klog.Background(), n.Spec.Taints, p.Spec.Tolerations,
			func(t *corev1.Taint) bool { return t.Effect == corev1.TaintEffectNoSchedule }, false); bad {
			t.Errorf("%s on %s does not tolerate %v", p.Name, n.Name, taint)
		}
		used[n.Name] += p.Spec.Containers[0].Resources.Requests.Cpu().MilliValue()
		for _, cp := range p.Spec.Containers[0].Ports {
			if cp.HostPort != 0 {
				ports[n.Name]++
			}
		}
	}
	for name, milli := range used {
		alloc := byName[name].Status.Allocatable
		if cpu := alloc.Cpu().MilliValue(); milli > cpu {
			t.Errorf("node %s holds %dm of CPU requests, allocatable %dm", name, milli, cpu)
		}
		if ports[name] > 1 {
			t.Errorf("node %s has host port 8080 %d times", name, ports[name])
		}
	}
	if bound < pods/2 {
		t.Errorf("only %d of %d pods placed: the load was meant to fill the nodes", bound, pods)
	}
	t.Logf("%d of %d pods placed; CPU used per node: %v", bound, pods, used)
}
