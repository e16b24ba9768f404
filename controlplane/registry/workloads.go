package registry

import (
	"fmt"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metavalidation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

func int32p(v int32) *int32 { return &v }

// validateSelectorAndTemplate checks that a workload's selector is set and
// selects its own template. emptyFor names the kind in the refusal of an empty
// selector (which would select every pod of the namespace); "" allows one, as
// Kubernetes does for Jobs, whose selector the server generates.
func validateSelectorAndTemplate(sel *metav1.LabelSelector, tmpl *corev1.PodTemplateSpec, sp *field.Path, emptyFor string) field.ErrorList {
	var errs field.ErrorList
	if sel == nil {
		errs = append(errs, field.Required(sp.Child("selector"), ""))
	} else {
		errs = append(errs, metavalidation.ValidateLabelSelector(sel, metavalidation.LabelSelectorValidationOptions{}, sp.Child("selector"))...)
		if emptyFor != "" && len(sel.MatchLabels)+len(sel.MatchExpressions) == 0 {
			errs = append(errs, field.Invalid(sp.Child("selector"), sel, "empty selector is invalid for "+emptyFor))
		}
		if s, err := metav1.LabelSelectorAsSelector(sel); err == nil && tmpl != nil && !s.Matches(labels.Set(tmpl.Labels)) {
			errs = append(errs, field.Invalid(sp.Child("template", "metadata", "labels"), tmpl.Labels, "`selector` does not match template `labels`"))
		}
	}
	if tmpl != nil {
		errs = append(errs, metavalidation.ValidateLabels(tmpl.Labels, sp.Child("template", "metadata", "labels"))...)
		errs = append(errs, ValidatePodSpec(&tmpl.Spec, sp.Child("template", "spec"))...)
	}
	return errs
}

func validateReplicas(r *int32, p *field.Path) field.ErrorList {
	if r != nil && *r < 0 {
		return field.ErrorList{field.Invalid(p, *r, "must be greater than or equal to 0")}
	}
	return nil
}

func immutableSelector(a, b *metav1.LabelSelector, p *field.Path) field.ErrorList {
	if !semanticEqual(a, b) {
		return field.ErrorList{field.Invalid(p, a, "field is immutable")}
	}
	return nil
}

func defaultIntOrPercent(v **intstr.IntOrString, d string) {
	if *v == nil {
		x := intstr.FromString(d)
		*v = &x
	}
}

func scaleOf(get func(runtime.Object) (int32, int32, *metav1.LabelSelector), set func(runtime.Object, int32)) *ScaleAccess {
	return &ScaleAccess{
		Get: func(o runtime.Object) (int32, int32, string) {
			spec, status, sel := get(o)
			s := ""
			if ls, err := metav1.LabelSelectorAsSelector(sel); err == nil {
				s = ls.String()
			}
			return spec, status, s
		},
		Set: set,
	}
}

func workloadResources() []*Resource {
	apps := appsv1.SchemeGroupVersion
	batch := batchv1.SchemeGroupVersion
	deploy := func(o runtime.Object) *appsv1.Deployment { return o.(*appsv1.Deployment) }
	rs := func(o runtime.Object) *appsv1.ReplicaSet { return o.(*appsv1.ReplicaSet) }
	sts := func(o runtime.Object) *appsv1.StatefulSet { return o.(*appsv1.StatefulSet) }
	ds := func(o runtime.Object) *appsv1.DaemonSet { return o.(*appsv1.DaemonSet) }
	job := func(o runtime.Object) *batchv1.Job { return o.(*batchv1.Job) }
	cj := func(o runtime.Object) *batchv1.CronJob { return o.(*batchv1.CronJob) }
	return []*Resource{
		{
			GVR: apps.WithResource("deployments"), Kind: "Deployment", Namespaced: true, ShortNames: []string{"deploy"}, Categories: []string{"all"},
			HasStatus: true, GenerationOnSpec: true,
			New: func() runtime.Object { return &appsv1.Deployment{} }, NewList: func() runtime.Object { return &appsv1.DeploymentList{} },
			Default: func(obj runtime.Object) {
				d := deploy(obj)
				if d.Spec.Replicas == nil {
					d.Spec.Replicas = int32p(1)
				}
				if d.Spec.Strategy.Type == "" {
					d.Spec.Strategy.Type = appsv1.RollingUpdateDeploymentStrategyType
				}
				if d.Spec.Strategy.Type == appsv1.RollingUpdateDeploymentStrategyType {
					if d.Spec.Strategy.RollingUpdate == nil {
						d.Spec.Strategy.RollingUpdate = &appsv1.RollingUpdateDeployment{}
					}
					defaultIntOrPercent(&d.Spec.Strategy.RollingUpdate.MaxUnavailable, "25%")
					defaultIntOrPercent(&d.Spec.Strategy.RollingUpdate.MaxSurge, "25%")
				}
				if d.Spec.RevisionHistoryLimit == nil {
					d.Spec.RevisionHistoryLimit = int32p(10)
				}
				if d.Spec.ProgressDeadlineSeconds == nil {
					d.Spec.ProgressDeadlineSeconds = int32p(600)
				}
				DefaultPodSpec(&d.Spec.Template.Spec)
			},
			Validate: func(obj runtime.Object) field.ErrorList {
				d := deploy(obj)
				sp := field.NewPath("spec")
				errs := validateSelectorAndTemplate(d.Spec.Selector, &d.Spec.Template, sp, "deployment")
				errs = append(errs, validateReplicas(d.Spec.Replicas, sp.Child("replicas"))...)
				if d.Spec.Strategy.Type != appsv1.RollingUpdateDeploymentStrategyType && d.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
					errs = append(errs, field.NotSupported(sp.Child("strategy", "type"), d.Spec.Strategy.Type, []string{"Recreate", "RollingUpdate"}))
				}
				if d.Spec.Strategy.Type == appsv1.RecreateDeploymentStrategyType && d.Spec.Strategy.RollingUpdate != nil {
					errs = append(errs, field.Forbidden(sp.Child("strategy", "rollingUpdate"), "may not be specified when strategy `type` is 'Recreate'"))
				}
				if d.Spec.Template.Spec.RestartPolicy != corev1.RestartPolicyAlways {
					errs = append(errs, field.NotSupported(sp.Child("template", "spec", "restartPolicy"), d.Spec.Template.Spec.RestartPolicy, []string{"Always"}))
				}
				return errs
			},
			ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
				return immutableSelector(deploy(obj).Spec.Selector, deploy(old).Spec.Selector, field.NewPath("spec", "selector"))
			},
			Scale: scaleOf(func(o runtime.Object) (int32, int32, *metav1.LabelSelector) {
				d := deploy(o)
				return ptrInt32(d.Spec.Replicas), d.Status.Replicas, d.Spec.Selector
			}, func(o runtime.Object, n int32) { deploy(o).Spec.Replicas = &n }),
			Columns: []Column{
				col("Ready", "string", func(o runtime.Object) interface{} {
					d := deploy(o)
					return ratio(d.Status.ReadyReplicas, ptrInt32(d.Spec.Replicas))
				}),
				col("Up-to-date", "integer", func(o runtime.Object) interface{} { return int64(deploy(o).Status.UpdatedReplicas) }),
				col("Available", "integer", func(o runtime.Object) interface{} { return int64(deploy(o).Status.AvailableReplicas) }),
				AgeColumn,
				wide(col("Containers", "string", func(o runtime.Object) interface{} { return containerNames(&deploy(o).Spec.Template) })),
				wide(col("Images", "string", func(o runtime.Object) interface{} { return containerImages(&deploy(o).Spec.Template) })),
				wide(col("Selector", "string", func(o runtime.Object) interface{} { return labelSelectorString(deploy(o).Spec.Selector) })),
			},
		},
		{
			GVR: apps.WithResource("replicasets"), Kind: "ReplicaSet", Namespaced: true, ShortNames: []string{"rs"}, Categories: []string{"all"},
			HasStatus: true, GenerationOnSpec: true,
			New: func() runtime.Object { return &appsv1.ReplicaSet{} }, NewList: func() runtime.Object { return &appsv1.ReplicaSetList{} },
			Default: func(obj runtime.Object) {
				r := rs(obj)
				if r.Spec.Replicas == nil {
					r.Spec.Replicas = int32p(1)
				}
				DefaultPodSpec(&r.Spec.Template.Spec)
			},
			Validate: func(obj runtime.Object) field.ErrorList {
				r := rs(obj)
				sp := field.NewPath("spec")
				return append(validateSelectorAndTemplate(r.Spec.Selector, &r.Spec.Template, sp, "replicaset"), validateReplicas(r.Spec.Replicas, sp.Child("replicas"))...)
			},
			ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
				return immutableSelector(rs(obj).Spec.Selector, rs(old).Spec.Selector, field.NewPath("spec", "selector"))
			},
			Scale: scaleOf(func(o runtime.Object) (int32, int32, *metav1.LabelSelector) {
				r := rs(o)
				return ptrInt32(r.Spec.Replicas), r.Status.Replicas, r.Spec.Selector
			}, func(o runtime.Object, n int32) { rs(o).Spec.Replicas = &n }),
			Columns: []Column{
				col("Desired", "integer", func(o runtime.Object) interface{} { return int64(ptrInt32(rs(o).Spec.Replicas)) }),
				col("Current", "integer", func(o runtime.Object) interface{} { return int64(rs(o).Status.Replicas) }),
				col("Ready", "integer", func(o runtime.Object) interface{} { return int64(rs(o).Status.ReadyReplicas) }),
				AgeColumn,
				wide(col("Containers", "string", func(o runtime.Object) interface{} { return containerNames(&rs(o).Spec.Template) })),
				wide(col("Images", "string", func(o runtime.Object) interface{} { return containerImages(&rs(o).Spec.Template) })),
				wide(col("Selector", "string", func(o runtime.Object) interface{} { return labelSelectorString(rs(o).Spec.Selector) })),
			},
		},
		{
			GVR: apps.WithResource("statefulsets"), Kind: "StatefulSet", Namespaced: true, ShortNames: []string{"sts"}, Categories: []string{"all"},
			HasStatus: true, GenerationOnSpec: true,
			New: func() runtime.Object { return &appsv1.StatefulSet{} }, NewList: func() runtime.Object { return &appsv1.StatefulSetList{} },
			Default: func(obj runtime.Object) {
				s := sts(obj)
				if s.Spec.Replicas == nil {
					s.Spec.Replicas = int32p(1)
				}
				if s.Spec.PodManagementPolicy == "" {
					s.Spec.PodManagementPolicy = appsv1.OrderedReadyPodManagement
				}
				if s.Spec.UpdateStrategy.Type == "" {
					s.Spec.UpdateStrategy.Type = appsv1.RollingUpdateStatefulSetStrategyType
				}
				if s.Spec.UpdateStrategy.Type == appsv1.RollingUpdateStatefulSetStrategyType && s.Spec.UpdateStrategy.RollingUpdate == nil {
					s.Spec.UpdateStrategy.RollingUpdate = &appsv1.RollingUpdateStatefulSetStrategy{Partition: int32p(0)}
				}
				if s.Spec.RevisionHistoryLimit == nil {
					s.Spec.RevisionHistoryLimit = int32p(10)
				}
				if s.Spec.PersistentVolumeClaimRetentionPolicy == nil {
					s.Spec.PersistentVolumeClaimRetentionPolicy = &appsv1.StatefulSetPersistentVolumeClaimRetentionPolicy{
						WhenDeleted: appsv1.RetainPersistentVolumeClaimRetentionPolicyType, WhenScaled: appsv1.RetainPersistentVolumeClaimRetentionPolicyType,
					}
				}
				DefaultPodSpec(&s.Spec.Template.Spec)
			},
			Validate: func(obj runtime.Object) field.ErrorList {
				s := sts(obj)
				sp := field.NewPath("spec")
				return append(validateSelectorAndTemplate(s.Spec.Selector, &s.Spec.Template, sp, "statefulset"), validateReplicas(s.Spec.Replicas, sp.Child("replicas"))...)
			},
			ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
				a, b := sts(obj), sts(old)
				errs := immutableSelector(a.Spec.Selector, b.Spec.Selector, field.NewPath("spec", "selector"))
				if a.Spec.ServiceName != b.Spec.ServiceName || a.Spec.PodManagementPolicy != b.Spec.PodManagementPolicy || !semanticEqual(a.Spec.VolumeClaimTemplates, b.Spec.VolumeClaimTemplates) {
					errs = append(errs, field.Forbidden(field.NewPath("spec"), "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"))
				}
				return errs
			},
			Scale: scaleOf(func(o runtime.Object) (int32, int32, *metav1.LabelSelector) {
				s := sts(o)
				return ptrInt32(s.Spec.Replicas), s.Status.Replicas, s.Spec.Selector
			}, func(o runtime.Object, n int32) { sts(o).Spec.Replicas = &n }),
			Columns: []Column{
				col("Ready", "string", func(o runtime.Object) interface{} {
					s := sts(o)
					return ratio(s.Status.ReadyReplicas, ptrInt32(s.Spec.Replicas))
				}),
				AgeColumn,
				wide(col("Containers", "string", func(o runtime.Object) interface{} { return containerNames(&sts(o).Spec.Template) })),
				wide(col("Images", "string", func(o runtime.Object) interface{} { return containerImages(&sts(o).Spec.Template) })),
			},
		},
		{
			GVR: apps.WithResource("daemonsets"), Kind: "DaemonSet", Namespaced: true, ShortNames: []string{"ds"}, Categories: []string{"all"},
			HasStatus: true, GenerationOnSpec: true,
			New: func() runtime.Object { return &appsv1.DaemonSet{} }, NewList: func() runtime.Object { return &appsv1.DaemonSetList{} },
			Default: func(obj runtime.Object) {
				d := ds(obj)
				if d.Spec.UpdateStrategy.Type == "" {
					d.Spec.UpdateStrategy.Type = appsv1.RollingUpdateDaemonSetStrategyType
				}
				if d.Spec.UpdateStrategy.Type == appsv1.RollingUpdateDaemonSetStrategyType {
					if d.Spec.UpdateStrategy.RollingUpdate == nil {
						d.Spec.UpdateStrategy.RollingUpdate = &appsv1.RollingUpdateDaemonSet{}
					}
					if d.Spec.UpdateStrategy.RollingUpdate.MaxUnavailable == nil {
						x := intstr.FromInt32(1)
						d.Spec.UpdateStrategy.RollingUpdate.MaxUnavailable = &x
					}
					if d.Spec.UpdateStrategy.RollingUpdate.MaxSurge == nil {
						x := intstr.FromInt32(0)
						d.Spec.UpdateStrategy.RollingUpdate.MaxSurge = &x
					}
				}
				if d.Spec.RevisionHistoryLimit == nil {
					d.Spec.RevisionHistoryLimit = int32p(10)
				}
				DefaultPodSpec(&d.Spec.Template.Spec)
			},
			Validate: func(obj runtime.Object) field.ErrorList {
				d := ds(obj)
				return validateSelectorAndTemplate(d.Spec.Selector, &d.Spec.Template, field.NewPath("spec"), "daemonset")
			},
			ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
				return immutableSelector(ds(obj).Spec.Selector, ds(old).Spec.Selector, field.NewPath("spec", "selector"))
			},
			Columns: []Column{
				col("Desired", "integer", func(o runtime.Object) interface{} { return int64(ds(o).Status.DesiredNumberScheduled) }),
				col("Current", "integer", func(o runtime.Object) interface{} { return int64(ds(o).Status.CurrentNumberScheduled) }),
				col("Ready", "integer", func(o runtime.Object) interface{} { return int64(ds(o).Status.NumberReady) }),
				col("Up-to-date", "integer", func(o runtime.Object) interface{} { return int64(ds(o).Status.UpdatedNumberScheduled) }),
				col("Available", "integer", func(o runtime.Object) interface{} { return int64(ds(o).Status.NumberAvailable) }),
				col("Node Selector", "string", func(o runtime.Object) interface{} { return selectorString(ds(o).Spec.Template.Spec.NodeSelector) }),
				AgeColumn,
			},
		},
		{
			GVR: apps.WithResource("controllerrevisions"), Kind: "ControllerRevision", Namespaced: true,
			New: func() runtime.Object { return &appsv1.ControllerRevision{} }, NewList: func() runtime.Object { return &appsv1.ControllerRevisionList{} },
			Columns: []Column{
				col("Controller", "string", func(o runtime.Object) interface{} {
					cr := o.(*appsv1.ControllerRevision)
					if ref := metav1.GetControllerOf(cr); ref != nil {
						return strings.ToLower(ref.Kind) + "." + strings.Split(ref.APIVersion, "/")[0] + "/" + ref.Name
					}
					return "<none>"
				}),
				col("Revision", "integer", func(o runtime.Object) interface{} { return o.(*appsv1.ControllerRevision).Revision }),
				AgeColumn,
			},
		},
		{
			GVR: batch.WithResource("jobs"), Kind: "Job", Namespaced: true, Categories: []string{"all"},
			HasStatus: true, GenerationOnSpec: true,
			New: func() runtime.Object { return &batchv1.Job{} }, NewList: func() runtime.Object { return &batchv1.JobList{} },
			Default: func(obj runtime.Object) {
				j := job(obj)
				if j.Spec.Completions == nil && j.Spec.Parallelism == nil {
					j.Spec.Completions, j.Spec.Parallelism = int32p(1), int32p(1)
				}
				if j.Spec.Parallelism == nil {
					j.Spec.Parallelism = int32p(1)
				}
				if j.Spec.BackoffLimit == nil {
					j.Spec.BackoffLimit = int32p(6)
				}
				if j.Spec.CompletionMode == nil {
					m := batchv1.NonIndexedCompletion
					j.Spec.CompletionMode = &m
				}
				if j.Spec.Suspend == nil {
					f := false
					j.Spec.Suspend = &f
				}
				if j.Spec.PodReplacementPolicy == nil {
					p := batchv1.TerminatingOrFailed
					j.Spec.PodReplacementPolicy = &p
				}
				DefaultPodSpec(&j.Spec.Template.Spec)
			},
			PrepareForCreate: func(obj runtime.Object) {
				if j := job(obj); j.Spec.ManualSelector == nil || !*j.Spec.ManualSelector {
					generateJobSelector(j)
				}
			},
			Validate: func(obj runtime.Object) field.ErrorList {
				j := job(obj)
				sp := field.NewPath("spec")
				errs := validateGeneratedJobSelector(j)
				errs = append(errs, validateSelectorAndTemplate(j.Spec.Selector, &j.Spec.Template, sp, "")...)
				if rp := j.Spec.Template.Spec.RestartPolicy; rp != corev1.RestartPolicyOnFailure && rp != corev1.RestartPolicyNever {
					errs = append(errs, field.NotSupported(sp.Child("template", "spec", "restartPolicy"), rp, []string{"OnFailure", "Never"}))
				}
				errs = append(errs, validateReplicas(j.Spec.Parallelism, sp.Child("parallelism"))...)
				errs = append(errs, validateReplicas(j.Spec.Completions, sp.Child("completions"))...)
				errs = append(errs, validateReplicas(j.Spec.BackoffLimit, sp.Child("backoffLimit"))...)
				return errs
			},
			ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
				a, b := job(obj), job(old)
				errs := immutableSelector(a.Spec.Selector, b.Spec.Selector, field.NewPath("spec", "selector"))
				if !semanticEqual(a.Spec.Template, b.Spec.Template) {
					errs = append(errs, field.Invalid(field.NewPath("spec", "template"), "", "field is immutable"))
				}
				return errs
			},
			Columns: []Column{
				col("Status", "string", func(o runtime.Object) interface{} {
					j := job(o)
					for _, c := range j.Status.Conditions {
						if c.Status == corev1.ConditionTrue && (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) {
							return string(c.Type)
						}
					}
					if j.Spec.Suspend != nil && *j.Spec.Suspend {
						return "Suspended"
					}
					return "Running"
				}),
				col("Completions", "string", func(o runtime.Object) interface{} {
					j := job(o)
					if j.Spec.Completions == nil {
						return fmt.Sprintf("%d/1 of %d", j.Status.Succeeded, ptrInt32(j.Spec.Parallelism))
					}
					return ratio(j.Status.Succeeded, *j.Spec.Completions)
				}),
				col("Duration", "string", func(o runtime.Object) interface{} {
					j := job(o)
					if j.Status.StartTime == nil {
						return ""
					}
					if j.Status.CompletionTime != nil {
						return j.Status.CompletionTime.Sub(j.Status.StartTime.Time).Round(1e9).String()
					}
					return age(*j.Status.StartTime)
				}),
				AgeColumn,
				wide(col("Containers", "string", func(o runtime.Object) interface{} { return containerNames(&job(o).Spec.Template) })),
				wide(col("Images", "string", func(o runtime.Object) interface{} { return containerImages(&job(o).Spec.Template) })),
				wide(col("Selector", "string", func(o runtime.Object) interface{} { return labelSelectorString(job(o).Spec.Selector) })),
			},
		},
		{
			GVR: batch.WithResource("cronjobs"), Kind: "CronJob", Namespaced: true, ShortNames: []string{"cj"}, Categories: []string{"all"},
			HasStatus: true, GenerationOnSpec: true,
			New: func() runtime.Object { return &batchv1.CronJob{} }, NewList: func() runtime.Object { return &batchv1.CronJobList{} },
			Default: func(obj runtime.Object) {
				c := cj(obj)
				if c.Spec.ConcurrencyPolicy == "" {
					c.Spec.ConcurrencyPolicy = batchv1.AllowConcurrent
				}
				if c.Spec.Suspend == nil {
					f := false
					c.Spec.Suspend = &f
				}
				if c.Spec.SuccessfulJobsHistoryLimit == nil {
					c.Spec.SuccessfulJobsHistoryLimit = int32p(3)
				}
				if c.Spec.FailedJobsHistoryLimit == nil {
					c.Spec.FailedJobsHistoryLimit = int32p(1)
				}
				DefaultPodSpec(&c.Spec.JobTemplate.Spec.Template.Spec)
			},
			Validate: func(obj runtime.Object) field.ErrorList {
				c := cj(obj)
				var errs field.ErrorList
				if strings.TrimSpace(c.Spec.Schedule) == "" {
					errs = append(errs, field.Required(field.NewPath("spec", "schedule"), ""))
				} else if n := len(strings.Fields(c.Spec.Schedule)); n != 5 && !strings.HasPrefix(c.Spec.Schedule, "@") {
					errs = append(errs, field.Invalid(field.NewPath("spec", "schedule"), c.Spec.Schedule, fmt.Sprintf("expected exactly 5 fields, found %d", n)))
				}
				errs = append(errs, ValidatePodSpec(&c.Spec.JobTemplate.Spec.Template.Spec, field.NewPath("spec", "jobTemplate", "spec", "template", "spec"))...)
				return errs
			},
			Columns: []Column{
				col("Schedule", "string", func(o runtime.Object) interface{} { return cj(o).Spec.Schedule }),
				col("Timezone", "string", func(o runtime.Object) interface{} {
					if tz := cj(o).Spec.TimeZone; tz != nil {
						return *tz
					}
					return "<none>"
				}),
				col("Suspend", "boolean", func(o runtime.Object) interface{} { return cj(o).Spec.Suspend != nil && *cj(o).Spec.Suspend }),
				col("Active", "integer", func(o runtime.Object) interface{} { return int64(len(cj(o).Status.Active)) }),
				col("Last Schedule", "string", func(o runtime.Object) interface{} {
					if t := cj(o).Status.LastScheduleTime; t != nil {
						return age(*t)
					}
					return "<none>"
				}),
				AgeColumn,
			},
		},
	}
}

func containerNames(t *corev1.PodTemplateSpec) string {
	var n []string
	for _, c := range t.Spec.Containers {
		n = append(n, c.Name)
	}
	return strings.Join(n, ",")
}

func containerImages(t *corev1.PodTemplateSpec) string {
	var n []string
	for _, c := range t.Spec.Containers {
		n = append(n, c.Image)
	}
	return strings.Join(n, ",")
}

// The unprefixed twins of batchv1's ControllerUidLabel and JobNameLabel:
// Kubernetes still puts them on a Job's pods, for selectors written before
// the prefixed ones.
const (
	legacyControllerUIDLabel = "controller-uid"
	legacyJobNameLabel       = "job-name"
)

// generateJobSelector gives a Job whose selector is not manual the selector
// Kubernetes generates on create: its template gets the controller-uid and
// job-name labels (both spellings) unless it has them, and the selector
// matches batch.kubernetes.io/controller-uid, merged into whatever selector was
// sent, so `selector: {}` works like no selector. A label the client set to
// something else is left for validateGeneratedJobSelector to refuse.
func generateJobSelector(j *batchv1.Job) {
	if j.Spec.Template.Labels == nil {
		j.Spec.Template.Labels = map[string]string{}
	}
	for k, v := range map[string]string{
		legacyJobNameLabel: j.Name, batchv1.JobNameLabel: j.Name,
		legacyControllerUIDLabel: string(j.UID), batchv1.ControllerUidLabel: string(j.UID),
	} {
		if _, ok := j.Spec.Template.Labels[k]; !ok {
			j.Spec.Template.Labels[k] = v
		}
	}
	if j.Spec.Selector == nil {
		j.Spec.Selector = &metav1.LabelSelector{}
	}
	if j.Spec.Selector.MatchLabels == nil {
		j.Spec.Selector.MatchLabels = map[string]string{}
	}
	if _, ok := j.Spec.Selector.MatchLabels[batchv1.ControllerUidLabel]; !ok {
		j.Spec.Selector.MatchLabels[batchv1.ControllerUidLabel] = string(j.UID)
	}
}

// validateGeneratedJobSelector checks, for a Job without manualSelector, that
// its template carries the generated labels with its own uid and name and that
// its selector matches them, as Kubernetes' validation does: otherwise two Jobs
// could select each other's pods.
func validateGeneratedJobSelector(j *batchv1.Job) field.ErrorList {
	if j.Spec.ManualSelector != nil && *j.Spec.ManualSelector || j.Spec.Selector == nil {
		return nil
	}
	var errs field.ErrorList
	if j.UID == "" {
		errs = append(errs, field.Required(field.NewPath("metadata", "uid"), ""))
	}
	lp := field.NewPath("spec", "template", "metadata", "labels")
	want := map[string]string{
		legacyControllerUIDLabel: string(j.UID), legacyJobNameLabel: j.Name,
		batchv1.ControllerUidLabel: string(j.UID), batchv1.JobNameLabel: j.Name,
	}
	for _, k := range []string{legacyControllerUIDLabel, legacyJobNameLabel, batchv1.ControllerUidLabel, batchv1.JobNameLabel} {
		got, ok := j.Spec.Template.Labels[k]
		switch {
		case !ok:
			errs = append(errs, field.Required(lp.Key(k), want[k]))
		case got != want[k]:
			errs = append(errs, field.Invalid(lp.Key(k), j.Spec.Template.Labels, fmt.Sprintf("must be '%s'", want[k])))
		}
	}
	if s, err := metav1.LabelSelectorAsSelector(j.Spec.Selector); err == nil && !s.Matches(labels.Set(want)) {
		errs = append(errs, field.Invalid(field.NewPath("spec", "selector"), j.Spec.Selector, "`selector` not auto-generated"))
	}
	return errs
}
