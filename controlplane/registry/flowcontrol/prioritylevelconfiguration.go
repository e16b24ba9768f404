package flowcontrol

import (
	"fmt"

	flowcontrolv1 "k8s.io/api/flowcontrol/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/petrel-project/petrel/controlplane/registry/generic"
	"github.com/petrel-project/petrel/controlplane/registry/printers"
)

// The v1 defaults of a Limited priority level, as Kubernetes sets them.
const (
	defaultNominalConcurrencyShares = 30
	defaultQueues                   = 64
	defaultHandSize                 = 8
	defaultQueueLengthLimit         = 50
)

// priorityLevelConfigurationResource is the strategy of
// flowcontrol.apiserver.k8s.io/v1 prioritylevelconfigurations (+status).
func priorityLevelConfigurationResource() *generic.Resource {
	pl := func(o runtime.Object) *flowcontrolv1.PriorityLevelConfiguration {
		return o.(*flowcontrolv1.PriorityLevelConfiguration)
	}
	queuing := func(o runtime.Object) *flowcontrolv1.QueuingConfiguration {
		if l := pl(o).Spec.Limited; l != nil {
			return l.LimitResponse.Queuing
		}
		return nil
	}
	return &generic.Resource{
		GVR: flowcontrolv1.SchemeGroupVersion.WithResource("prioritylevelconfigurations"), Kind: "PriorityLevelConfiguration", HasStatus: true, GenerationOnSpec: true,
		New:     func() runtime.Object { return &flowcontrolv1.PriorityLevelConfiguration{} },
		NewList: func() runtime.Object { return &flowcontrolv1.PriorityLevelConfigurationList{} },
		Default: func(obj runtime.Object) { defaultPriorityLevel(&pl(obj).Spec) },
		Validate: func(obj runtime.Object) field.ErrorList {
			return validatePriorityLevel(pl(obj).Name, &pl(obj).Spec)
		},
		Columns: []generic.Column{
			printers.Col("Type", "string", func(o runtime.Object) interface{} { return string(pl(o).Spec.Type) }),
			printers.Col("NominalConcurrencyShares", "string", func(o runtime.Object) interface{} {
				if l := pl(o).Spec.Limited; l != nil && l.NominalConcurrencyShares != nil {
					return fmt.Sprint(*l.NominalConcurrencyShares)
				}
				return "<none>"
			}),
			printers.Col("Queues", "string", func(o runtime.Object) interface{} {
				if q := queuing(o); q != nil {
					return fmt.Sprint(q.Queues)
				}
				return "<none>"
			}),
			printers.Col("HandSize", "string", func(o runtime.Object) interface{} {
				if q := queuing(o); q != nil {
					return fmt.Sprint(q.HandSize)
				}
				return "<none>"
			}),
			printers.Col("QueueLengthLimit", "string", func(o runtime.Object) interface{} {
				if q := queuing(o); q != nil {
					return fmt.Sprint(q.QueueLengthLimit)
				}
				return "<none>"
			}),
			printers.AgeColumn,
		},
	}
}

func defaultPriorityLevel(s *flowcontrolv1.PriorityLevelConfigurationSpec) {
	i32 := func(v int32) *int32 { return &v }
	if l := s.Limited; l != nil {
		if l.NominalConcurrencyShares == nil {
			l.NominalConcurrencyShares = i32(defaultNominalConcurrencyShares)
		}
		if l.LendablePercent == nil {
			l.LendablePercent = i32(0)
		}
		if q := l.LimitResponse.Queuing; q != nil {
			if q.Queues == 0 {
				q.Queues = defaultQueues
			}
			if q.HandSize == 0 {
				q.HandSize = defaultHandSize
			}
			if q.QueueLengthLimit == 0 {
				q.QueueLengthLimit = defaultQueueLengthLimit
			}
		}
	}
	if e := s.Exempt; e != nil {
		if e.NominalConcurrencyShares == nil {
			e.NominalConcurrencyShares = i32(0)
		}
		if e.LendablePercent == nil {
			e.LendablePercent = i32(0)
		}
	}
}

// validatePriorityLevel checks a v1 priority level as Kubernetes does in
// the main: its type matches the one configuration given, shares and
// percentages are in range, and queuing is shuffle-shardable.
func validatePriorityLevel(name string, s *flowcontrolv1.PriorityLevelConfigurationSpec) field.ErrorList {
	sp := field.NewPath("spec")
	var errs field.ErrorList
	switch s.Type {
	case flowcontrolv1.PriorityLevelEnablementExempt:
		if s.Limited != nil {
			errs = append(errs, field.Forbidden(sp.Child("limited"), "must be nil if the type is not Limited"))
		}
		if name != flowcontrolv1.PriorityLevelConfigurationNameExempt {
			errs = append(errs, field.Invalid(sp.Child("type"), s.Type, "type must be 'Limited' if name is not 'exempt'"))
		}
	case flowcontrolv1.PriorityLevelEnablementLimited:
		if s.Exempt != nil {
			errs = append(errs, field.Forbidden(sp.Child("exempt"), "must be nil if the type is Limited"))
		}
		l := s.Limited
		if l == nil {
			errs = append(errs, field.Required(sp.Child("limited"), "must not be empty when type is Limited"))
			break
		}
		lp := sp.Child("limited")
		if l.NominalConcurrencyShares != nil && *l.NominalConcurrencyShares < 0 {
			errs = append(errs, field.Invalid(lp.Child("nominalConcurrencyShares"), *l.NominalConcurrencyShares, "must be a non-negative integer"))
		}
		if l.LendablePercent != nil && (*l.LendablePercent < 0 || *l.LendablePercent > 100) {
			errs = append(errs, field.Invalid(lp.Child("lendablePercent"), *l.LendablePercent, "must be between 0 and 100, inclusive"))
		}
		if l.BorrowingLimitPercent != nil && *l.BorrowingLimitPercent < 0 {
			errs = append(errs, field.Invalid(lp.Child("borrowingLimitPercent"), *l.BorrowingLimitPercent, "if specified, must be a non-negative integer"))
		}
		rp := lp.Child("limitResponse")
		switch l.LimitResponse.Type {
		case flowcontrolv1.LimitResponseTypeReject:
			if l.LimitResponse.Queuing != nil {
				errs = append(errs, field.Forbidden(rp.Child("queuing"), "must be nil if limited.limitResponse.type is not Limited"))
			}
		case flowcontrolv1.LimitResponseTypeQueue:
			q := l.LimitResponse.Queuing
			if q == nil {
				errs = append(errs, field.Required(rp.Child("queuing"), "must not be empty if limited.limitResponse.type is Limited"))
				break
			}
			qp := rp.Child("queuing")
			if q.QueueLengthLimit <= 0 {
				errs = append(errs, field.Invalid(qp.Child("queueLengthLimit"), q.QueueLengthLimit, "must be positive"))
			}
			if q.Queues <= 0 {
				errs = append(errs, field.Invalid(qp.Child("queues"), q.Queues, "must be positive"))
			}
			if q.HandSize <= 0 || q.HandSize > q.Queues {
				errs = append(errs, field.Invalid(qp.Child("handSize"), q.HandSize, fmt.Sprintf("should not be greater than queues (%d)", q.Queues)))
			}
		default:
			errs = append(errs, field.NotSupported(rp.Child("type"), l.LimitResponse.Type, []string{string(flowcontrolv1.LimitResponseTypeQueue), string(flowcontrolv1.LimitResponseTypeReject)}))
		}
	default:
		errs = append(errs, field.NotSupported(sp.Child("type"), s.Type, []string{string(flowcontrolv1.PriorityLevelEnablementExempt), string(flowcontrolv1.PriorityLevelEnablementLimited)}))
	}
	return errs
}
