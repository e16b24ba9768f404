package e2e

import (
	"strconv"

	"k8s.io/apimachinery/pkg/labels"
)

func itoa(i int) string { return strconv.Itoa(i) }

func labelsEverything() labels.Selector { return labels.Everything() }
