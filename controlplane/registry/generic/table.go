package generic

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// Table renders objects as the metav1.Table kubectl prints. includeObject says
// what each row carries: "None", "Metadata" (default) or "Object".
func (r *Resource) Table(objs []runtime.Object, noHeaders bool, partial func(runtime.Object) runtime.RawExtension) *metav1.Table {
	t := &metav1.Table{}
	if !noHeaders {
		t.ColumnDefinitions = append(t.ColumnDefinitions, metav1.TableColumnDefinition{
			Name: "Name", Type: "string", Format: "name",
			Description: "Name must be unique within a namespace. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names",
		})
		for _, c := range r.Columns {
			t.ColumnDefinitions = append(t.ColumnDefinitions, metav1.TableColumnDefinition{
				Name: c.Name, Type: c.Type, Format: c.Format, Priority: c.Priority, Description: c.Description,
			})
		}
	}
	t.Rows = make([]metav1.TableRow, 0, len(objs))
	for _, obj := range objs {
		cells := make([]interface{}, 0, len(r.Columns)+1)
		if r.TableName != nil {
			cells = append(cells, r.TableName(obj))
		} else {
			cells = append(cells, nameOf(obj))
		}
		for _, c := range r.Columns {
			cells = append(cells, c.Cell(obj))
		}
		row := metav1.TableRow{Cells: cells}
		if partial != nil {
			row.Object = partial(obj)
		}
		t.Rows = append(t.Rows, row)
	}
	return t
}

func nameOf(obj runtime.Object) string {
	if m, ok := obj.(metav1.Object); ok {
		return m.GetName()
	}
	return ""
}
