"""Choose Diffusion-Link's inference on the VALIDATION split: centring x start noise x k* x S.

Fits Diffusion-Link (default profile settings: max 20 epochs, patience 3, fit scenes) once per
centring ("none", "modality"), bridges the validation audio with every (start noise, k*, S) and
prints audio->text R@1/R@10, paired cosine, centroid distance and separability beside raw audio and
ridge regression. Output: data/inference_selection.csv (git-ignored; docs/METHOD.md says why).
Needs the default profile's embeddings (notebooks 01-02). About 8 minutes on 2 CPU cores.
"""

import sys

import pandas as pd

import dlink
from dlink import experiment
from dlink.bridges.baselines import make_bridge
from dlink.evaluation.gap import gap_report


def main(out="data/inference_selection.csv"):
    params = dlink.resolve_params(profile="default")
    emb = experiment.embeddings(params)
    val, rows = emb["val"], []

    def report(name, bridged):
        g = gap_report(bridged, val["text"][:, 0], paired=True, seed=0)
        keys = ("a2t_R1", "a2t_R10", "paired_cos_mean", "centroid_distance", "separability")
        rows.append({"variant": name, **{k: round(g[k], 3) for k in keys}})
        print(rows[-1], flush=True)

    report("raw", val["audio"])
    ridge = make_bridge("ridge").fit(
        *experiment.bridge_pairs(emb["fit"]), val=experiment.bridge_pairs(emb["val"])
    )
    report(f"ridge lam={float(ridge.lam)}", ridge.transform(val["audio"]))
    for centre in ("none", "modality"):
        link = make_bridge("diffusion_link", epochs=20, patience=3, centre=centre, progress=False)
        link.fit(*experiment.bridge_pairs(emb["fit"]), val=experiment.bridge_pairs(emb["val"]))
        for noise in (False, True):
            for k in (100, 300, 500, 700):
                for s in (1, 5):
                    bridged = link.transform(val["audio"], start_step=k, steps=s, start_noise=noise)
                    report(f"{centre} noise={noise} k={k} S={s}", bridged)
    pd.DataFrame(rows).to_csv(out, index=False)
    print("wrote", out)


if __name__ == "__main__":
    main(*sys.argv[1:])
