// Package mcaconfig is the model of an mca_config.json, the config of a
// Megatron-Core (MCA) checkpoint as ROLL writes it: its values kept as
// written (package pyjson), their checks against [ir.MCARules], typed
// accessors, the values the ops read and the parallel layout it records
// as a [shard.Layout].
package mcaconfig
