package registry

import (
	"net"
	"strings"

	"github.com/petrel-project/petrel/controlplane/registry/certificates"
	"github.com/petrel-project/petrel/controlplane/registry/coreapi"
	"github.com/petrel-project/petrel/controlplane/registry/customresource"
	"github.com/petrel-project/petrel/controlplane/registry/printers"
	"github.com/petrel-project/petrel/controlplane/registry/quota"
	"github.com/petrel-project/petrel/controlplane/registry/rbacapi"
)

// Config carries the cluster settings that defaulting and validation need.
type Config struct {
	ServiceCIDR  *net.IPNet
	NodePortMin  int
	NodePortMax  int
	ServiceHooks Hooks
}

// All returns every served resource.
func All(cfg Config) []*Resource {
	var out []*Resource
	out = append(out, coreResources(cfg)...)
	out = append(out, workloadResources()...)
	out = append(out, otherResources()...)
	out = append(out, rbacapi.Resources()...)
	out = append(out, policyResources()...)
	out = append(out, hpaResources()...)
	out = append(out, apiServiceResource())
	out = append(out, certificates.Resources()...)
	out = append(out, quota.Resources()...)
	out = append(out, customresource.DefinitionResource())
	out = append(out, apiGroupResources()...)
	out = append(out, admissionRegistrationResources()...)
	for _, r := range out {
		if r.Singular == "" {
			r.Singular = strings.ToLower(r.Kind)
		}
		if !hasAge(r.Columns) {
			r.Columns = append(r.Columns, printers.AgeColumn)
		}
	}
	return out
}

func hasAge(cols []Column) bool {
	for _, c := range cols {
		if c.Name == "Age" || c.Name == printers.CreatedAtColumn.Name {
			return true
		}
	}
	return false
}

func otherResources() []*Resource {
	return []*Resource{
		endpointSliceResource(),
		ingressResource(),
		ingressClassResource(),
		networkPolicyResource(),
		leaseResource(),
		eventsV1EventResource(),
	}
}

func coreResources(cfg Config) []*Resource {
	return []*Resource{
		namespaceResource(),
		podResource(),
		serviceResource(cfg),
		endpointsResource(),
		configMapResource(),
		secretResource(),
		serviceAccountResource(),
		nodeResource(),
		eventResource(),
		persistentVolumeResource(),
		persistentVolumeClaimResource(),
	}
}

// serviceRanges are the ranges Service validation checks against.
func serviceRanges(cfg Config) coreapi.ServiceRanges {
	return coreapi.ServiceRanges{ServiceCIDR: cfg.ServiceCIDR, NodePortMin: cfg.NodePortMin, NodePortMax: cfg.NodePortMax}
}
