package registry

import (
	"fmt"
	"strings"

	"github.com/petrel-project/petrel/controlplane/registry/printers"

	"github.com/petrel-project/petrel/controlplane/registry/coreapi"

	batchv1 "k8s.io/api/batch/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// cronJobResource is the strategy of cronjobs.
func cronJobResource() *Resource {
	batch := batchv1.SchemeGroupVersion
	cj := func(o runtime.Object) *batchv1.CronJob { return o.(*batchv1.CronJob) }
	return &Resource{
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
			coreapi.DefaultPodSpec(&c.Spec.JobTemplate.Spec.Template.Spec)
		},
		Validate: func(obj runtime.Object) field.ErrorList {
			c := cj(obj)
			var errs field.ErrorList
			if strings.TrimSpace(c.Spec.Schedule) == "" {
				errs = append(errs, field.Required(field.NewPath("spec", "schedule"), ""))
			} else if n := len(strings.Fields(c.Spec.Schedule)); n != 5 && !strings.HasPrefix(c.Spec.Schedule, "@") {
				errs = append(errs, field.Invalid(field.NewPath("spec", "schedule"), c.Spec.Schedule, fmt.Sprintf("expected exactly 5 fields, found %d", n)))
			}
			errs = append(errs, coreapi.ValidatePodSpec(&c.Spec.JobTemplate.Spec.Template.Spec, field.NewPath("spec", "jobTemplate", "spec", "template", "spec"))...)
			return errs
		},
		Columns: []Column{
			printers.Col("Schedule", "string", func(o runtime.Object) interface{} { return cj(o).Spec.Schedule }),
			printers.Col("Timezone", "string", func(o runtime.Object) interface{} {
				if tz := cj(o).Spec.TimeZone; tz != nil {
					return *tz
				}
				return "<none>"
			}),
			printers.Col("Suspend", "boolean", func(o runtime.Object) interface{} { return cj(o).Spec.Suspend != nil && *cj(o).Spec.Suspend }),
			printers.Col("Active", "integer", func(o runtime.Object) interface{} { return int64(len(cj(o).Status.Active)) }),
			printers.Col("Last Schedule", "string", func(o runtime.Object) interface{} {
				if t := cj(o).Status.LastScheduleTime; t != nil {
					return printers.Age(*t)
				}
				return "<none>"
			}),
			printers.AgeColumn,
		},
	}
}
