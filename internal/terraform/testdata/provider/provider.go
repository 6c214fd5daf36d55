package main

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/provider"
	pschema "github.com/hashicorp/terraform-plugin-framework/provider/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/int64planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/listplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/types"
)

type standIn struct{}

func newProvider() provider.Provider { return &standIn{} }

func (p *standIn) Metadata(_ context.Context, _ provider.MetadataRequest, resp *provider.MetadataResponse) {
	resp.TypeName = "proxmox"
}

func (p *standIn) Schema(_ context.Context, _ provider.SchemaRequest, resp *provider.SchemaResponse) {
	resp.Schema = pschema.Schema{Attributes: map[string]pschema.Attribute{
		"endpoint": pschema.StringAttribute{Required: true, Description: "file:///DIR: the directory that holds the simulated VMs"},
		"insecure": pschema.BoolAttribute{Optional: true},
	}}
}

type providerModel struct {
	Endpoint types.String `tfsdk:"endpoint"`
	Insecure types.Bool   `tfsdk:"insecure"`
}

func (p *standIn) Configure(ctx context.Context, req provider.ConfigureRequest, resp *provider.ConfigureResponse) {
	var m providerModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	u, err := url.Parse(m.Endpoint.ValueString())
	if err != nil || u.Scheme != "file" || u.Path == "" {
		resp.Diagnostics.AddAttributeError(path.Root("endpoint"), "not a hypervisor directory", fmt.Sprintf("want file:///DIR, got %q", m.Endpoint.ValueString()))
		return
	}
	resp.ResourceData = u.Path
}

func (p *standIn) Resources(context.Context) []func() resource.Resource {
	return []func() resource.Resource{func() resource.Resource { return &vm{} }}
}

func (p *standIn) DataSources(context.Context) []func() datasource.DataSource { return nil }

type vm struct{ dir string }

type vmModel struct {
	ID          types.String `tfsdk:"id"`
	VMID        types.Int64  `tfsdk:"vm_id"`
	Name        types.String `tfsdk:"name"`
	NodeName    types.String `tfsdk:"node_name"`
	Description types.String `tfsdk:"description"`
	Tags        types.List   `tfsdk:"tags"`
}

func (r *vm) Metadata(_ context.Context, _ resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = "proxmox_virtual_environment_vm"
}

func (r *vm) Schema(_ context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	replace := []planmodifier.String{stringplanmodifier.RequiresReplace()}
	resp.Schema = schema.Schema{Attributes: map[string]schema.Attribute{
		"id":          schema.StringAttribute{Computed: true, PlanModifiers: []planmodifier.String{stringplanmodifier.UseStateForUnknown()}},
		"vm_id":       schema.Int64Attribute{Required: true, PlanModifiers: []planmodifier.Int64{int64planmodifier.RequiresReplace()}},
		"name":        schema.StringAttribute{Required: true, PlanModifiers: replace},
		"node_name":   schema.StringAttribute{Required: true, PlanModifiers: replace},
		"description": schema.StringAttribute{Optional: true, PlanModifiers: replace},
		"tags":        schema.ListAttribute{ElementType: types.StringType, Optional: true, PlanModifiers: []planmodifier.List{listplanmodifier.RequiresReplace()}},
	}}
}

func (r *vm) Configure(_ context.Context, req resource.ConfigureRequest, _ *resource.ConfigureResponse) {
	if dir, ok := req.ProviderData.(string); ok {
		r.dir = dir
	}
}

func (r *vm) file(m vmModel) string { return filepath.Join(r.dir, m.Name.ValueString()+".vm") }

// Create clones the VM: its file appears, holding the description. With
// DROVER_FIXTURE_CLONE_SECONDS the clone takes that long (only
// DROVER_FIXTURE_SLOW_NODE's, when set), for the tests that stop a run
// while Terraform creates a VM: an interrupted clone creates nothing.
func (r *vm) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	var m vmModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	if slow := os.Getenv("DROVER_FIXTURE_SLOW_NODE"); slow == "" || slow == m.Name.ValueString() {
		secs, _ := strconv.Atoi(os.Getenv("DROVER_FIXTURE_CLONE_SECONDS"))
		select {
		case <-ctx.Done():
			resp.Diagnostics.AddError("clone interrupted", ctx.Err().Error())
			return
		case <-time.After(time.Duration(secs) * time.Second):
		}
	}
	if err := os.WriteFile(r.file(m), []byte(m.Description.ValueString()), 0o600); err != nil {
		resp.Diagnostics.AddError("create the VM", err.Error())
		return
	}
	m.ID = types.StringValue(m.NodeName.ValueString() + "/" + strconv.FormatInt(m.VMID.ValueInt64(), 10))
	resp.Diagnostics.Append(resp.State.Set(ctx, &m)...)
}

// Read finds the VM gone when its file is.
func (r *vm) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	var m vmModel
	resp.Diagnostics.Append(req.State.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	if _, err := os.Stat(r.file(m)); os.IsNotExist(err) {
		resp.State.RemoveResource(ctx)
	}
}

// Update never happens: every attribute forces a new VM.
func (r *vm) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	resp.Diagnostics.AddError("update", "every attribute of the stand-in VM forces a replacement")
}

// Delete destroys the VM: its file goes.
func (r *vm) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	var m vmModel
	resp.Diagnostics.Append(req.State.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	if err := os.Remove(r.file(m)); err != nil && !os.IsNotExist(err) {
		resp.Diagnostics.AddError("delete the VM", err.Error())
	}
}
