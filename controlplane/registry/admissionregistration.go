package registry

import (
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/petrel-project/petrel/controlplane/registry/admissionapi"
	"github.com/petrel-project/petrel/controlplane/registry/printers"
)

// admissionRegistrationResources are the admissionregistration.k8s.io/v1
// kinds: webhook configurations and validating admission policies with
// their bindings. The admission plugins that act on them follow them
// through informers (controlplane/admission/webhook).
func admissionRegistrationResources() []*Resource {
	gv := admissionregistrationv1.SchemeGroupVersion
	return []*Resource{
		{
			GVR: gv.WithResource("mutatingwebhookconfigurations"), Kind: "MutatingWebhookConfiguration", Categories: []string{"api-extensions"},
			New:     func() runtime.Object { return &admissionregistrationv1.MutatingWebhookConfiguration{} },
			NewList: func() runtime.Object { return &admissionregistrationv1.MutatingWebhookConfigurationList{} },
			Default: func(obj runtime.Object) {
				admissionapi.DefaultMutatingConfiguration(obj.(*admissionregistrationv1.MutatingWebhookConfiguration))
			},
			Validate: func(obj runtime.Object) field.ErrorList {
				return admissionapi.ValidateMutatingConfiguration(obj.(*admissionregistrationv1.MutatingWebhookConfiguration))
			},
			Columns: []Column{printers.Col("Webhooks", "integer", func(o runtime.Object) interface{} {
				return int64(len(o.(*admissionregistrationv1.MutatingWebhookConfiguration).Webhooks))
			})},
		},
		{
			GVR: gv.WithResource("validatingwebhookconfigurations"), Kind: "ValidatingWebhookConfiguration", Categories: []string{"api-extensions"},
			New:     func() runtime.Object { return &admissionregistrationv1.ValidatingWebhookConfiguration{} },
			NewList: func() runtime.Object { return &admissionregistrationv1.ValidatingWebhookConfigurationList{} },
			Default: func(obj runtime.Object) {
				admissionapi.DefaultValidatingConfiguration(obj.(*admissionregistrationv1.ValidatingWebhookConfiguration))
			},
			Validate: func(obj runtime.Object) field.ErrorList {
				return admissionapi.ValidateValidatingConfiguration(obj.(*admissionregistrationv1.ValidatingWebhookConfiguration))
			},
			Columns: []Column{printers.Col("Webhooks", "integer", func(o runtime.Object) interface{} {
				return int64(len(o.(*admissionregistrationv1.ValidatingWebhookConfiguration).Webhooks))
			})},
		},
		{
			GVR: gv.WithResource("validatingadmissionpolicies"), Kind: "ValidatingAdmissionPolicy", Categories: []string{"api-extensions"},
			HasStatus: true, GenerationOnSpec: true,
			New:     func() runtime.Object { return &admissionregistrationv1.ValidatingAdmissionPolicy{} },
			NewList: func() runtime.Object { return &admissionregistrationv1.ValidatingAdmissionPolicyList{} },
			Default: func(obj runtime.Object) {
				admissionapi.DefaultPolicy(obj.(*admissionregistrationv1.ValidatingAdmissionPolicy))
			},
			Validate: func(obj runtime.Object) field.ErrorList {
				return admissionapi.ValidatePolicy(obj.(*admissionregistrationv1.ValidatingAdmissionPolicy))
			},
			Columns: []Column{
				printers.Col("Validations", "integer", func(o runtime.Object) interface{} {
					return int64(len(o.(*admissionregistrationv1.ValidatingAdmissionPolicy).Spec.Validations))
				}),
				printers.Col("ParamKind", "string", func(o runtime.Object) interface{} {
					if pk := o.(*admissionregistrationv1.ValidatingAdmissionPolicy).Spec.ParamKind; pk != nil {
						return pk.APIVersion + "/" + pk.Kind
					}
					return "<unset>"
				}),
			},
		},
		{
			GVR: gv.WithResource("validatingadmissionpolicybindings"), Kind: "ValidatingAdmissionPolicyBinding", Categories: []string{"api-extensions"},
			GenerationOnSpec: true,
			New:              func() runtime.Object { return &admissionregistrationv1.ValidatingAdmissionPolicyBinding{} },
			NewList:          func() runtime.Object { return &admissionregistrationv1.ValidatingAdmissionPolicyBindingList{} },
			Default: func(obj runtime.Object) {
				admissionapi.DefaultBinding(obj.(*admissionregistrationv1.ValidatingAdmissionPolicyBinding))
			},
			Validate: func(obj runtime.Object) field.ErrorList {
				return admissionapi.ValidateBinding(obj.(*admissionregistrationv1.ValidatingAdmissionPolicyBinding))
			},
			Columns: []Column{
				printers.Col("PolicyName", "string", func(o runtime.Object) interface{} {
					return o.(*admissionregistrationv1.ValidatingAdmissionPolicyBinding).Spec.PolicyName
				}),
				printers.Col("ParamRef", "string", func(o runtime.Object) interface{} {
					r := o.(*admissionregistrationv1.ValidatingAdmissionPolicyBinding).Spec.ParamRef
					if r == nil {
						return "<unset>"
					}
					if r.Name != "" {
						return strings.TrimPrefix(r.Namespace+"/"+r.Name, "/")
					}
					return "*"
				}),
			},
		},
	}
}
