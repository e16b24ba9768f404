// Command petrel-cni is Petrel's CNI plugin (spec 1.1: ADD, DEL, CHECK,
// STATUS, GC, VERSION): a veth and a /32 address from the node's podCIDR
// per pod. Container runtimes call it with the network configuration on
// stdin, as the CNI spec says. The petrel binary is the same plugin when it
// is run under the name petrel-cni.
package main

import "github.com/petrel-project/petrel/cni"

func main() { cni.PluginMain() }
