"""The procedural driving world behind `gf_jax.data.synthetic` (private; import the public module).

Pipeline for a chunk of scenarios, all vectorised over scenarios with numpy:
`recipes` (what each scenario should show: a `plan.Plan`) -> `roads` + `conflicts` (lane graph,
routes, crosswalks, who follows and who yields to whom; `templates` for the topologies and
`road_map` for the map pieces the model reads) -> `population` (vehicles and cyclists, the ego
among them) + `pedestrians` -> `traffic` (the 10 Hz simulation loop: `driving` for car following,
yielding and stops, `lane_change` for MOBIL, `crossings` for pedestrians, `signals`, and
`interactions` for who can meet whom) -> `labels` (scenario types from what happened) ->
`features` (the GameFormer layout) -> `noise` (label-noise injection). `cities` holds the four
city styles, `draws` the per-scenario random streams and `geometry` the batched polyline helpers.
"""
