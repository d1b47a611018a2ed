"""Does reduced precision give the same answers? bf16 / int8 (/ fp16 on CUDA) against fp32, compact execution.

For each model and precision: top-1 agreement with fp32, mean |difference| of the logits, mean |difference| of
the tokens entering each halting layer, the fraction of clips whose Glimpser kept the same patches and the
fraction of tokens whose halting decision (the layer after which the token stopped, matched by patch) is the
same. Models:

* a checkpoint of ours with its split (``--checkpoint best.pth --split val``: the demo's, or one trained with
  ``configs/scratch_motion.yaml``); its config and class names come from the checkpoint;
* the release fixture (``--release-fixture DIR``: checkpoint.pth, config.json and expected.pt with its input clips).

    python -m experiments.precision_agreement --checkpoint demo_out/work/best.pth --out agreement_demo.json
    python -m experiments.precision_agreement --release-fixture tests/fixtures/official-tiny

Prints a table and writes JSON (``--out``).
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import torch
from tqdm import tqdm

import haltingvt
from haltingvt.data import build_dataset, collate_eval, normalize
from haltingvt.models import convert_precision, precision_context, supported_precisions
from haltingvt.predict import Predictor


def _token_keys(out: haltingvt.HaltingVTOutput) -> list[dict[tuple[int, int], int]]:
    """Per clip: (frame, original patch index) -> 1-based halting layer; the cls token is (-1, -1)."""
    depth = out.halt_depth.cpu()
    kept = out.kept_patches[-1].cpu() if out.kept_patches else None
    result = []
    for b in range(depth.shape[0]):
        keys = {(-1, -1): int(depth[b, 0])}
        if kept is None:  # no selecting Glimpser layer: slots are the patches in order
            for m in range(1, depth.shape[1]):
                keys[(0, m - 1)] = int(depth[b, m])
        else:  # tokens are slot-major: token 1 + s * T + t is slot s of frame t (the Glimpser's "(s t)" order)
            T, k = kept.shape[1:]
            for t in range(T):
                for s in range(k):
                    keys[(t, int(kept[b, t, s]))] = int(depth[b, 1 + s * T + t])
        result.append(keys)
    return result


def compare(ref: list[haltingvt.HaltingVTOutput], low: list[haltingvt.HaltingVTOutput]) -> dict[str, float]:
    """Agreement of the outputs of one precision (``low``) with fp32 (``ref``), batch by batch."""
    same_top1 = clips = same_kept = same_tokens = tokens = common = same_common = 0
    logit_diff = token_diff = 0.0
    for r, o in zip(ref, low):
        same_top1 += int((r.logits.argmax(-1) == o.logits.argmax(-1)).sum())
        clips += r.logits.shape[0]
        logit_diff += float((r.logits.float() - o.logits.float()).abs().mean(-1).sum())
        token_diff += float((r.token_counts.double() - o.token_counts.double()).abs().mean(-1).sum())
        for kr, ko in zip(_token_keys(r), _token_keys(o)):
            same_kept += int(kr.keys() == ko.keys())
            same_tokens += sum(1 for key, d in kr.items() if ko.get(key) == d)
            tokens += len(kr)
            both = kr.keys() & ko.keys()
            common += len(both)
            same_common += sum(1 for key in both if kr[key] == ko[key])
    return {
        "clips": clips,
        "top1_agreement": same_top1 / clips,
        "mean_abs_logit_diff": logit_diff / clips,
        "mean_abs_token_count_diff": token_diff / clips,
        "glimpser_same_patches": same_kept / clips,
        "glimpser_patches_kept_by_both": common / tokens,
        "halting_decisions_same": same_tokens / tokens,
        "halting_decisions_same_where_both_kept": same_common / max(common, 1),
        "tokens": tokens,
    }


def run_models(
    model: torch.nn.Module, batches: list[torch.Tensor], precisions: list[str], device: torch.device
) -> dict[str, list[haltingvt.HaltingVTOutput]]:
    outs = {}
    for precision in ["fp32", *precisions]:
        m = convert_precision(copy.deepcopy(model), precision, device)
        with torch.inference_mode():
            outs[precision] = []
            for clips in tqdm(batches, desc=precision, leave=False):
                with precision_context(precision, device):
                    outs[precision].append(m(normalize(clips.to(device)), execution="compact"))
    return outs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", help="our checkpoint (config and classes inside)")
    parser.add_argument("--split", default="val", choices=["val", "test"])
    parser.add_argument("--release-fixture", help="folder with checkpoint.pth, config.json, expected.pt")
    parser.add_argument("--precisions", nargs="+", default=None, help="default: every one the device supports")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--out", help="write the results as JSON")
    args = parser.parse_args()
    device = torch.device(args.device)
    precisions = args.precisions or [p for p in supported_precisions(device) if p != "fp32"]

    if args.release_fixture:
        folder = Path(args.release_fixture)
        arch = json.loads((folder / "config.json").read_text())
        expected = torch.load(folder / "expected.pt", weights_only=True)
        model = haltingvt.create_model(arch, num_classes=expected["cls_scores"].shape[1]).eval()
        haltingvt.load_checkpoint(model, folder / "checkpoint.pth")
        batches = [expected["input_uint8"]]
        name = f"release fixture {folder.name}"
    elif args.checkpoint:
        predictor = Predictor(args.checkpoint, device="cpu", precision="fp32")
        model = predictor.model
        dataset = build_dataset(predictor.cfg, args.split)
        loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch_size, collate_fn=collate_eval)
        batches = [batch["clips"].flatten(0, 1) for batch in loader]
        name = f"{args.checkpoint} ({predictor.cfg.get('name')}, {args.split})"
    else:
        parser.error("give --checkpoint or --release-fixture")
    model.to(device)
    outs = run_models(model, batches, precisions, device)
    results = {"model": name, "device": str(device), "torch": torch.__version__, "precisions": {}}
    print(name)
    print(
        f"{'precision':<9} {'clips':>6} {'top-1 same':>10} {'|d logits|':>10} {'|d tokens|':>10} "
        f"{'kept same':>9} {'kept both':>9} {'halting same':>12} {'(both kept)':>11}"
    )
    for precision in precisions:
        r = compare(outs["fp32"], outs[precision])
        results["precisions"][precision] = r
        print(
            f"{precision:<9} {r['clips']:>6} {r['top1_agreement']:>10.2%} {r['mean_abs_logit_diff']:>10.2e} "
            f"{r['mean_abs_token_count_diff']:>10.3f} {r['glimpser_same_patches']:>9.2%} "
            f"{r['glimpser_patches_kept_by_both']:>9.2%} {r['halting_decisions_same']:>12.2%} "
            f"{r['halting_decisions_same_where_both_kept']:>11.2%}"
        )
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))
        print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
