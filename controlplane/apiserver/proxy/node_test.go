package proxy

import (
	"net/url"
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestConnectOptionsFromQuery(t *testing.T) {
	exec := connectOptions("exec", url.Values{"command": {"ls", "-l"}, "stdin": {"true"}, "stdout": {"1"}, "container": {"c"}})
	if want := (&corev1.PodExecOptions{Container: "c", Command: []string{"ls", "-l"}, Stdin: true, Stdout: true}); !reflect.DeepEqual(exec, want) {
		t.Fatalf("exec options %+v", exec)
	}
	pf := connectOptions("portforward", url.Values{"ports": {"80,443", "8080"}})
	if want := (&corev1.PodPortForwardOptions{Ports: []int32{80, 443, 8080}}); !reflect.DeepEqual(pf, want) {
		t.Fatalf("port-forward options %+v", pf)
	}
	if connectOptions("log", url.Values{}) != nil {
		t.Fatal("logs are not a CONNECT")
	}
}
