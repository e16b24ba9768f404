package server

import (
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func metaAccessor(obj runtime.Object) (metav1.Object, error) { return meta.Accessor(obj) }

func intOrStr(port int) intstr.IntOrString { return intstr.FromInt32(int32(port)) }
