// Package storage holds the strategies of storage.k8s.io/v1 StorageClasses,
// CSIDrivers, CSINodes, VolumeAttachments and CSIStorageCapacities for the
// generic store: objects only, as nothing provisions or attaches volumes yet.
package storage

import "github.com/petrel-project/petrel/controlplane/registry/generic"

// Resources are the group's kinds.
func Resources() []*generic.Resource {
	return []*generic.Resource{storageClassResource(), csiDriverResource(), csiNodeResource(), volumeAttachmentResource(), csiStorageCapacityResource()}
}
