package ast

import (
	"reflect"
	"sync"
)

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

// childField is an exported field of a node struct that holds nodes: a
// pointer to one, or a slice of pointers to them.
type childField struct {
	index int
	slice bool
}

// childFields caches, per struct type, the fields inspectChildren visits,
// so that walking a tree does not inspect the same types over again.
var childFields sync.Map // reflect.Type -> []childField

// fieldsOf returns the child fields of the struct type t, in order.
func fieldsOf(t reflect.Type) []childField {
	if cf, ok := childFields.Load(t); ok {
		return cf.([]childField)
	}
	var out []childField
	for i := 0; i < t.NumField(); i++ {
		field := t.Field(i)
		if field.Anonymous || !field.IsExported() {
			continue
		}
		switch ft := field.Type; ft.Kind() {
		case reflect.Pointer:
			if ft.Implements(nodeType) {
				out = append(out, childField{index: i})
			}
		case reflect.Slice:
			if e := ft.Elem(); e.Kind() == reflect.Pointer && e.Implements(nodeType) {
				out = append(out, childField{index: i, slice: true})
			}
		}
	}
	childFields.Store(t, out)
	return out
}

func inspectChildren(v reflect.Value, f func(Node) bool) {
	if v.Kind() == reflect.Pointer {
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct {
		return
	}
	for _, cf := range fieldsOf(v.Type()) {
		fv := v.Field(cf.index)
		if !cf.slice {
			if !fv.IsNil() {
				Inspect(fv.Interface().(Node), f)
			}
			continue
		}
		for j := 0; j < fv.Len(); j++ {
			if e := fv.Index(j); !e.IsNil() {
				Inspect(e.Interface().(Node), f)
			}
		}
	}
}
