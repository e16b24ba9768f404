// Command petrel-cni is Petrel's CNI plugin (spec 1.1: ADD, DEL, CHECK,
// STATUS, GC, VERSION): a veth and a /32 address from the node's podCIDR
// per pod. Container runtimes call it with the network configuration on
// stdin, as the CNI spec says.
package main

import (
	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/petrel-project/petrel/cni"
)

func main() {
	skel.PluginMainFuncs(skel.CNIFuncs{
		Add: func(args *skel.CmdArgs) error {
			c, err := cni.ParseConfig(args.StdinData)
			if err != nil {
				return err
			}
			res, err := cni.Add(c, args.ContainerID, args.Netns, args.IfName)
			if err != nil {
				return err
			}
			return types.PrintResult(res, c.CNIVersion)
		},
		Del: func(args *skel.CmdArgs) error {
			c, err := cni.ParseConfig(args.StdinData)
			if err != nil {
				return err
			}
			return cni.Del(c, args.ContainerID, args.IfName)
		},
		Check: func(args *skel.CmdArgs) error {
			c, err := cni.ParseConfig(args.StdinData)
			if err != nil {
				return err
			}
			return cni.Check(c, args.ContainerID, args.Netns, args.IfName)
		},
		GC: func(args *skel.CmdArgs) error {
			c, err := cni.ParseConfig(args.StdinData)
			if err != nil {
				return err
			}
			return cni.GC(c, c.ValidAttachments)
		},
		Status: func(args *skel.CmdArgs) error {
			c, err := cni.ParseConfig(args.StdinData)
			if err != nil {
				return err
			}
			return cni.Status(c)
		},
	}, version.All, "petrel-cni: veth and podCIDR addresses for Petrel pods")
}
