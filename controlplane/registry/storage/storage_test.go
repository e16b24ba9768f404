package storage

import (
	"github.com/petrel-project/petrel/controlplane/registry/generic"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"testing"
)

// find is the package's strategy of the named resource.
func find(t *testing.T, name string) *generic.Resource {
	t.Helper()
	for _, r := range Resources() {
		if r.GVR.Resource == name {
			return r
		}
	}
	t.Fatalf("no resource %s", name)
	return nil
}

// check runs a kind's defaults and validation on obj and wants an error on
// field ("" for none).
func check(t *testing.T, res *generic.Resource, obj runtime.Object, field string) {
	t.Helper()
	if res.Default != nil {
		res.Default(obj)
	}
	errs := res.Validate(obj)
	if field == "" {
		if len(errs) > 0 {
			t.Fatalf("want valid, got %v", errs)
		}
		return
	}
	for _, e := range errs {
		if e.Field == field {
			return
		}
	}
	t.Fatalf("want an error on %s, got %v", field, errs)
}

func TestStorageKinds(t *testing.T) {
	sc := &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "s"}, Provisioner: "example.com/p"}
	check(t, find(t, "storageclasses"), sc, "")
	if *sc.ReclaimPolicy != corev1.PersistentVolumeReclaimDelete || *sc.VolumeBindingMode != storagev1.VolumeBindingImmediate {
		t.Fatalf("storage class defaults: %v %v", *sc.ReclaimPolicy, *sc.VolumeBindingMode)
	}
	check(t, find(t, "storageclasses"), &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "s"}}, "provisioner")
	d := &storagev1.CSIDriver{ObjectMeta: metav1.ObjectMeta{Name: "d.example.com"}}
	check(t, find(t, "csidrivers"), d, "")
	if !*d.Spec.AttachRequired || len(d.Spec.VolumeLifecycleModes) != 1 {
		t.Fatalf("CSIDriver defaults: %+v", d.Spec)
	}
	check(t, find(t, "csinodes"), &storagev1.CSINode{Spec: storagev1.CSINodeSpec{Drivers: []storagev1.CSINodeDriver{{Name: "d"}}}}, "spec.drivers[0].nodeID")
	pv := "pv"
	check(t, find(t, "volumeattachments"), &storagev1.VolumeAttachment{Spec: storagev1.VolumeAttachmentSpec{Attacher: "a", NodeName: "n", Source: storagev1.VolumeAttachmentSource{PersistentVolumeName: &pv}}}, "")
	check(t, find(t, "volumeattachments"), &storagev1.VolumeAttachment{Spec: storagev1.VolumeAttachmentSpec{Attacher: "a", NodeName: "n"}}, "spec.source")
	check(t, find(t, "csistoragecapacities"), &storagev1.CSIStorageCapacity{}, "storageClassName")
}
