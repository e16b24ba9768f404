package cni

import (
	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"
)

// PluginMain runs the CNI plugin on the process's environment and stdin,
// as a container runtime calls it, and exits.
func PluginMain() {
	skel.PluginMainFuncs(skel.CNIFuncs{
		Add: func(args *skel.CmdArgs) error {
			c, err := ParseConfig(args.StdinData)
			if err != nil {
				return err
			}
			res, err := Add(c, args.ContainerID, args.Netns, args.IfName)
			if err != nil {
				return err
			}
			return types.PrintResult(res, c.CNIVersion)
		},
		Del: func(args *skel.CmdArgs) error {
			c, err := ParseConfig(args.StdinData)
			if err != nil {
				return err
			}
			return Del(c, args.ContainerID, args.IfName)
		},
		Check: func(args *skel.CmdArgs) error {
			c, err := ParseConfig(args.StdinData)
			if err != nil {
				return err
			}
			return Check(c, args.ContainerID, args.Netns, args.IfName)
		},
		GC: func(args *skel.CmdArgs) error {
			c, err := ParseConfig(args.StdinData)
			if err != nil {
				return err
			}
			return GC(c, c.ValidAttachments)
		},
		Status: func(args *skel.CmdArgs) error {
			c, err := ParseConfig(args.StdinData)
			if err != nil {
				return err
			}
			return Status(c)
		},
	}, version.All, "petrel-cni: veth and podCIDR addresses for Petrel pods")
}
