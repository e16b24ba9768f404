// Package podautoscaler is the HorizontalPodAutoscaler controller: every
// sync period it reads each HPA's target through the scale subresource,
// the target's pods, and their usage from metrics.k8s.io, computes the
// replica count with Kubernetes' algorithm (Resource and ContainerResource
// metrics from metrics.k8s.io; Pods, Object and External metrics from the
// custom and external metrics APIs, custom.go), applies the behavior (stabilization windows and rate
// policies) and the replica bounds, scales the target, and writes the
// status with currentMetrics and the AbleToScale, ScalingActive and
// ScalingLimited conditions.
package podautoscaler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	autoscalinglisters "k8s.io/client-go/listers/autoscaling/v2"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/scale"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	metricsclient "k8s.io/metrics/pkg/client/clientset/versioned"
	custommetrics "k8s.io/metrics/pkg/client/custom_metrics"
	externalmetrics "k8s.io/metrics/pkg/client/external_metrics"
	"k8s.io/utils/ptr"

	"github.com/petrel-project/petrel/controlplane/controllers/loop"
)

// DefaultSyncPeriod is how often each HPA is looked at (Kubernetes'
// --horizontal-pod-autoscaler-sync-period).
const DefaultSyncPeriod = 15 * time.Second

// Controller scales the targets of HorizontalPodAutoscalers.
type Controller struct {
	client  kubernetes.Interface
	metrics metricsclient.Interface
	// custom and external serve Pods/Object and External metrics; nil
	// until SetMetricsAPIs.
	custom   custommetrics.CustomMetricsClient
	external externalmetrics.ExternalMetricsClient
	scales   scale.ScalesGetter
	mapper   meta.RESTMapper
	hpas     autoscalinglisters.HorizontalPodAutoscalerLister
	pods     corelisters.PodLister
	period   time.Duration
	events   record.EventBroadcaster
	record   record.EventRecorder
	loop     *loop.Loop
	now      func() time.Time

	mu      sync.Mutex
	history map[string]*history
}

// New makes the controller; period 0 is DefaultSyncPeriod.
func New(cs kubernetes.Interface, mc metricsclient.Interface, scales scale.ScalesGetter, mapper meta.RESTMapper,
	factory informers.SharedInformerFactory, period time.Duration) *Controller {
	if period <= 0 {
		period = DefaultSyncPeriod
	}
	hpaInf, podInf := factory.Autoscaling().V2().HorizontalPodAutoscalers(), factory.Core().V1().Pods()
	c := &Controller{client: cs, metrics: mc, scales: scales, mapper: mapper, hpas: hpaInf.Lister(), pods: podInf.Lister(),
		period: period, now: time.Now, history: map[string]*history{}}
	c.events = record.NewBroadcaster()
	c.record = c.events.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "horizontal-pod-autoscaler"})
	c.loop = loop.New("horizontal pod autoscaler", c.sync)
	c.loop.Synced(hpaInf.Informer().HasSynced, podInf.Informer().HasSynced)
	_, _ = hpaInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: c.loop.Enqueue,
		// Status writes come back as updates: only a spec change is looked
		// at before the period is up.
		UpdateFunc: func(old, cur interface{}) {
			if old.(*autoscalingv2.HorizontalPodAutoscaler).Generation != cur.(*autoscalingv2.HorizontalPodAutoscaler).Generation {
				c.loop.Enqueue(cur)
			}
		},
		DeleteFunc: c.loop.Enqueue,
	})
	return c
}

// Run works until ctx ends.
func (c *Controller) Run(ctx context.Context) {
	c.events.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: c.client.CoreV1().Events("")})
	defer c.events.Shutdown()
	c.loop.Run(ctx, 2)
}

func (c *Controller) historyOf(key string) *history {
	c.mu.Lock()
	defer c.mu.Unlock()
	h := c.history[key]
	if h == nil {
		h = &history{}
		c.history[key] = h
	}
	return h
}

func (c *Controller) sync(ctx context.Context, key string) (time.Duration, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return 0, nil
	}
	shared, err := c.hpas.HorizontalPodAutoscalers(ns).Get(name)
	if apierrors.IsNotFound(err) {
		c.mu.Lock()
		delete(c.history, key)
		c.mu.Unlock()
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	hpa := shared.DeepCopy()
	if err := c.reconcile(ctx, key, hpa); err != nil {
		slog.Debug("horizontal pod autoscaler", "hpa", key, "err", err)
	}
	if !apiequality.Semantic.DeepEqual(shared.Status, hpa.Status) {
		if _, err := c.client.AutoscalingV2().HorizontalPodAutoscalers(ns).UpdateStatus(ctx, hpa, metav1.UpdateOptions{}); err != nil {
			return 0, fmt.Errorf("updating status of %s: %w", key, err)
		}
	}
	return c.period, nil
}

// reconcile computes and applies the HPA's replica count, filling hpa's
// status; an error has already been put in the conditions.
func (c *Controller) reconcile(ctx context.Context, key string, hpa *autoscalingv2.HorizontalPodAutoscaler) error {
	now := c.now()
	ref := hpa.Spec.ScaleTargetRef
	gv, err := schema.ParseGroupVersion(ref.APIVersion)
	if err != nil {
		c.fail(hpa, autoscalingv2.AbleToScale, "FailedGetScale", fmt.Sprintf("the HPA controller was unable to get the target's current scale: %v", err))
		return err
	}
	mappings, err := c.mapper.RESTMappings(schema.GroupKind{Group: gv.Group, Kind: ref.Kind}, gv.Version)
	if err != nil || len(mappings) == 0 {
		msg := fmt.Sprintf("the HPA controller was unable to get the target's current scale: no matches for kind %q in group %q", ref.Kind, gv.Group)
		c.fail(hpa, autoscalingv2.AbleToScale, "FailedGetScale", msg)
		c.record.Event(hpa, corev1.EventTypeWarning, "FailedGetScale", msg)
		return fmt.Errorf("mapping %s: %w", ref.Kind, err)
	}
	gr := mappings[0].Resource.GroupResource()
	sc, err := c.scales.Scales(hpa.Namespace).Get(ctx, gr, ref.Name, metav1.GetOptions{})
	if err != nil {
		msg := fmt.Sprintf("the HPA controller was unable to get the target's current scale: %v", err)
		c.fail(hpa, autoscalingv2.AbleToScale, "FailedGetScale", msg)
		c.record.Event(hpa, corev1.EventTypeWarning, "FailedGetScale", msg)
		return err
	}
	setCondition(hpa, autoscalingv2.AbleToScale, corev1.ConditionTrue, "SucceededGetScale", "the HPA controller was able to get the target's current scale", now)
	current := sc.Spec.Replicas
	hpa.Status.CurrentReplicas = sc.Status.Replicas
	hpa.Status.ObservedGeneration = ptr.To(hpa.Generation)
	minReplicas := int32(1)
	if hpa.Spec.MinReplicas != nil {
		minReplicas = *hpa.Spec.MinReplicas
	}

	var desired int32
	rescaleReason := ""
	h := c.historyOf(key)
	switch {
	case current == 0 && minReplicas != 0:
		// Autoscaling is off while the target is scaled to zero.
		desired = 0
		setCondition(hpa, autoscalingv2.ScalingActive, corev1.ConditionFalse, "ScalingDisabled", "scaling is disabled since the replica count of the target is zero", now)
	case current > hpa.Spec.MaxReplicas:
		desired, rescaleReason = hpa.Spec.MaxReplicas, "Current number of replicas above Spec.MaxReplicas"
	case current < minReplicas:
		desired, rescaleReason = minReplicas, "Current number of replicas below Spec.MinReplicas"
	default:
		proposed, metricName, statuses, err := c.proposal(ctx, hpa, sc, current, now)
		if err != nil {
			hpa.Status.CurrentMetrics = statuses
			c.fail(hpa, autoscalingv2.ScalingActive, failedReason(err), err.Error())
			c.record.Event(hpa, corev1.EventTypeWarning, "FailedComputeMetricsReplicas", "invalid metrics ("+err.Error()+")")
			hpa.Status.DesiredReplicas = current
			return err
		}
		hpa.Status.CurrentMetrics = statuses
		setCondition(hpa, autoscalingv2.ScalingActive, corev1.ConditionTrue, "ValidMetricFound",
			fmt.Sprintf("the HPA was able to successfully calculate a replica count from %s", metricName), now)
		n := h.normalize(hpa.Spec, current, proposed, now)
		setCondition(hpa, autoscalingv2.AbleToScale, corev1.ConditionTrue, n.StabilizedReason, n.StabMsg, now)
		if n.Limited {
			setCondition(hpa, autoscalingv2.ScalingLimited, corev1.ConditionTrue, n.LimitReason, n.LimitMessage, now)
		} else {
			setCondition(hpa, autoscalingv2.ScalingLimited, corev1.ConditionFalse, n.LimitReason, n.LimitMessage, now)
		}
		desired = n.Replicas
		if desired > current {
			rescaleReason = metricName + " above target"
		} else {
			rescaleReason = "All metrics below target"
		}
	}
	hpa.Status.DesiredReplicas = desired
	if desired == current {
		return nil
	}
	sc.Spec.Replicas = desired
	if _, err := c.scales.Scales(hpa.Namespace).Update(ctx, gr, sc, metav1.UpdateOptions{}); err != nil {
		msg := fmt.Sprintf("the HPA controller was unable to update the target scale: %v", err)
		c.fail(hpa, autoscalingv2.AbleToScale, "FailedUpdateScale", msg)
		c.record.Event(hpa, corev1.EventTypeWarning, "FailedRescale", fmt.Sprintf("New size: %d; reason: %s; error: %v", desired, rescaleReason, err))
		return err
	}
	h.record(current, desired, now)
	setCondition(hpa, autoscalingv2.AbleToScale, corev1.ConditionTrue, "SucceededRescale", fmt.Sprintf("the HPA controller was able to update the target scale to %d", desired), now)
	c.record.Eventf(hpa, corev1.EventTypeNormal, "SuccessfulRescale", "New size: %d; reason: %s", desired, rescaleReason)
	hpa.Status.LastScaleTime = &metav1.Time{Time: now}
	slog.Info("horizontal pod autoscaler: rescaled", "hpa", key, "from", current, "to", desired, "reason", rescaleReason)
	return nil
}

// fail sets a condition False with reason and message.
func (c *Controller) fail(hpa *autoscalingv2.HorizontalPodAutoscaler, t autoscalingv2.HorizontalPodAutoscalerConditionType, reason, msg string) {
	setCondition(hpa, t, corev1.ConditionFalse, reason, msg, c.now())
}

// proposal is the largest replica count the HPA's metrics ask for, the
// name of the metric that asked it, and every metric's current value. A
// metric that cannot be computed is an error when none can, or when the
// others would scale down (Kubernetes then holds the size).
func (c *Controller) proposal(ctx context.Context, hpa *autoscalingv2.HorizontalPodAutoscaler, sc *autoscalingv1.Scale, current int32, now time.Time) (int32, string, []autoscalingv2.MetricStatus, error) {
	if sc.Status.Selector == "" {
		return 0, "", nil, errors.New("selector is required")
	}
	sel, err := labels.Parse(sc.Status.Selector)
	if err != nil {
		return 0, "", nil, fmt.Errorf("couldn't convert selector into a corresponding internal selector object: %w", err)
	}
	pods, err := c.pods.Pods(hpa.Namespace).List(sel)
	if err != nil {
		return 0, "", nil, err
	}
	var usage map[string]map[string]corev1.ResourceList // pod → container → usage
	var stamps map[string]PodMetric
	statuses := make([]autoscalingv2.MetricStatus, len(hpa.Spec.Metrics))
	var best int32
	bestName := ""
	var errs []error
	for i, m := range hpa.Spec.Metrics {
		var res corev1.ResourceName
		var target autoscalingv2.MetricTarget
		container := ""
		switch {
		case m.Type == autoscalingv2.ResourceMetricSourceType && m.Resource != nil:
			res, target = m.Resource.Name, m.Resource.Target
		case m.Type == autoscalingv2.ContainerResourceMetricSourceType && m.ContainerResource != nil:
			res, target, container = m.ContainerResource.Name, m.ContainerResource.Target, m.ContainerResource.Container
		default:
			replicas, st, name, err := c.customReplicas(hpa, m, current, pods, sel, now)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			statuses[i] = st
			if bestName == "" || replicas > best {
				best, bestName = replicas, name
			}
			continue
		}
		if usage == nil {
			usage, stamps, err = c.podUsage(ctx, hpa.Namespace, sel)
			if err != nil {
				return 0, "", statuses, fmt.Errorf("unable to get metrics for resource %s: unable to fetch metrics from resource metrics API: %w", res, err)
			}
		}
		metrics := map[string]PodMetric{}
		for pod, ctrs := range usage {
			var sum int64
			found := false
			for name, u := range ctrs {
				if container != "" && name != container {
					continue
				}
				if q, ok := u[res]; ok {
					sum += q.MilliValue()
					found = true
				}
			}
			if found {
				pm := stamps[pod]
				pm.Value = sum
				metrics[pod] = pm
			}
		}
		var replicas int32
		var current2 autoscalingv2.MetricValueStatus
		var name string
		switch target.Type {
		case autoscalingv2.UtilizationMetricType:
			util, raw := int32(0), int64(0)
			replicas, util, raw, err = ResourceReplicas(current, *target.AverageUtilization, res, container, pods, metrics, now)
			current2 = autoscalingv2.MetricValueStatus{AverageUtilization: ptr.To(util), AverageValue: resource.NewMilliQuantity(raw, resource.DecimalSI)}
			name = fmt.Sprintf("%s resource utilization (percentage of request)", res)
		case autoscalingv2.AverageValueMetricType:
			raw := int64(0)
			replicas, raw, err = AverageValueReplicas(current, target.AverageValue.MilliValue(), res, pods, metrics, now)
			current2 = autoscalingv2.MetricValueStatus{AverageValue: resource.NewMilliQuantity(raw, resource.DecimalSI)}
			name = fmt.Sprintf("%s resource", res)
		default:
			err = fmt.Errorf("invalid target type %q for resource %s", target.Type, res)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("failed to get %s utilization: %w", res, err))
			continue
		}
		if container != "" {
			statuses[i] = autoscalingv2.MetricStatus{Type: m.Type, ContainerResource: &autoscalingv2.ContainerResourceMetricStatus{Name: res, Container: container, Current: current2}}
			name = "container " + name
		} else {
			statuses[i] = autoscalingv2.MetricStatus{Type: m.Type, Resource: &autoscalingv2.ResourceMetricStatus{Name: res, Current: current2}}
		}
		if bestName == "" || replicas > best {
			best, bestName = replicas, name
		}
	}
	valid := statuses[:0:0]
	for _, s := range statuses {
		if s.Type != "" {
			valid = append(valid, s)
		}
	}
	if len(errs) > 0 && (bestName == "" || best < current) {
		return 0, "", valid, errors.Join(errs...)
	}
	return best, bestName, valid, nil
}

// podUsage lists the PodMetrics of the selected pods.
func (c *Controller) podUsage(ctx context.Context, ns string, sel labels.Selector) (map[string]map[string]corev1.ResourceList, map[string]PodMetric, error) {
	list, err := c.metrics.MetricsV1beta1().PodMetricses(ns).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return nil, nil, err
	}
	if len(list.Items) == 0 {
		return nil, nil, errors.New("no metrics returned from resource metrics API")
	}
	usage := map[string]map[string]corev1.ResourceList{}
	stamps := map[string]PodMetric{}
	for _, pm := range list.Items {
		ctrs := map[string]corev1.ResourceList{}
		for _, ct := range pm.Containers {
			ctrs[ct.Name] = ct.Usage
		}
		usage[pm.Name] = ctrs
		stamps[pm.Name] = PodMetric{Timestamp: pm.Timestamp.Time, Window: pm.Window.Duration}
	}
	return usage, stamps, nil
}

// setCondition sets a condition, keeping its transition time while its
// status holds.
func setCondition(hpa *autoscalingv2.HorizontalPodAutoscaler, t autoscalingv2.HorizontalPodAutoscalerConditionType, status corev1.ConditionStatus, reason, msg string, now time.Time) {
	for i := range hpa.Status.Conditions {
		c := &hpa.Status.Conditions[i]
		if c.Type != t {
			continue
		}
		if c.Status != status {
			c.LastTransitionTime = metav1.Time{Time: now}
		}
		c.Status, c.Reason, c.Message = status, reason, msg
		return
	}
	hpa.Status.Conditions = append(hpa.Status.Conditions, autoscalingv2.HorizontalPodAutoscalerCondition{
		Type: t, Status: status, Reason: reason, Message: msg, LastTransitionTime: metav1.Time{Time: now}})
}
