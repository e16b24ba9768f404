package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/petrel-project/petrel/test/cluster"
)

// TestReadmeWalkThroughNamesEachServiceOnce: the README's walk-through once
// created Service web twice (kubectl expose, then kubectl create service), so
// its second half failed with AlreadyExists for a user who typed it in.
func TestReadmeWalkThroughNamesEachServiceOnce(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(cluster.RepoRoot(), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	expose := regexp.MustCompile(`kubectl expose (?:deployment|deploy)[ /](\S+)(.*)`)
	nameFlag := regexp.MustCompile(`--name[= ](\S+)`)
	create := regexp.MustCompile(`kubectl create service \S+ (\S+)`)
	created := map[string]int{}
	for _, line := range strings.Split(string(data), "\n") {
		if m := expose.FindStringSubmatch(line); m != nil {
			name := m[1]
			if n := nameFlag.FindStringSubmatch(m[2]); n != nil {
				name = n[1]
			}
			created[name]++
		}
		if m := create.FindStringSubmatch(line); m != nil {
			created[m[1]]++
		}
	}
	if len(created) == 0 {
		t.Fatal("found no Service created in README.md; has the walk-through moved?")
	}
	for name, n := range created {
		if n > 1 {
			t.Errorf("README.md creates Service %q %d times", name, n)
		}
	}
}
