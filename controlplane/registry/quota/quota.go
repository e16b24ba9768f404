// Package quota holds the strategies of core/v1 LimitRanges and
// ResourceQuotas together with what an object counts and is defaulted to
// under them: the LimitRanger and ResourceQuota admission plugins and the
// quota controller read those, so the rules live beside the kinds that
// state them.
package quota

import "github.com/petrel-project/petrel/controlplane/registry/generic"

// Resources are the two kinds, in the order discovery has always listed
// them.
func Resources() []*generic.Resource {
	return []*generic.Resource{limitRangeResource(), resourceQuotaResource()}
}
