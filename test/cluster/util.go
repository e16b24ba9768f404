package cluster

import (
	"io"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var metav1GetOptions = metav1.GetOptions{}

func stringsReader(s string) io.Reader { return strings.NewReader(s) }
