package registry

// apiGroupResources are the kinds added for Kubernetes 1.32's built-in
// groups beyond the workloads (issue 21 item 5): ReplicationControllers
// and PodTemplates, priority and runtime classes, storage objects and the
// API priority-and-fairness objects.
func apiGroupResources() []*Resource {
	return []*Resource{
		replicationControllerResource(),
		podTemplateResource(),
		priorityClassResource(),
		runtimeClassResource(),
		storageClassResource(),
		csiDriverResource(),
		csiNodeResource(),
		volumeAttachmentResource(),
		csiStorageCapacityResource(),
		flowSchemaResource(),
		priorityLevelConfigurationResource(),
	}
}
