"""The paper's raw per-seed numbers (research/paper_recipe.md §1.6), shared by the report tests."""

# Best-epoch plan ADE for seeds 3407, 42, 2024.
PAPER_ADE = {
    "tracin": [1.6868, 1.6804, 1.7457],
    "metadata": [1.8317, 1.8026, 1.8307],
    "baseline": [1.9166, 1.5931, 1.8065],
    "hybrid": [1.7716, 1.8478, 1.6795],
    "loss": [1.7275, 1.7256, 2.5550],
}
