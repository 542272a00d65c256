package ast

import "reflect"

var nodeType = reflect.TypeOf((*Node)(nil)).Elem()

// Inspect calls f for n and then, in source order, for every node below it,
// depth first. If f returns false the children of that node are skipped.
func Inspect(n Node, f func(Node) bool) {
	if n == nil {
		return
	}
	v := reflect.ValueOf(n)
	if v.Kind() == reflect.Pointer && v.IsNil() {
		return
	}
	if !f(n) {
		return
	}
	inspectChildren(v, f)
}

func inspectChildren(v reflect.Value, f func(Node) bool) {
	if v.Kind() == reflect.Pointer {
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct {
		return
	}
	for i := 0; i < v.NumField(); i++ {
		field := v.Type().Field(i)
		if field.Anonymous || !field.IsExported() {
			continue
		}
		fv := v.Field(i)
		switch fv.Kind() {
		case reflect.Pointer:
			if !fv.IsNil() && fv.Type().Implements(nodeType) {
				Inspect(fv.Interface().(Node), f)
			}
		case reflect.Slice:
			for j := 0; j < fv.Len(); j++ {
				e := fv.Index(j)
				if e.Kind() == reflect.Pointer && !e.IsNil() && e.Type().Implements(nodeType) {
					Inspect(e.Interface().(Node), f)
				}
			}
		}
	}
}
