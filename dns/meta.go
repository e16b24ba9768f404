package dns

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// slimMeta keeps the metadata an informer cache needs (keys, labels,
// resourceVersion) and drops the rest, managedFields above all.
func slimMeta(m metav1.ObjectMeta) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: m.Name, Namespace: m.Namespace, UID: m.UID, ResourceVersion: m.ResourceVersion, Labels: m.Labels}
}
