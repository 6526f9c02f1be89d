"""A method below its input is flagged, +DC verdicts never call a drop "helps", and a model's
configuration lists only the loss weights that act."""

from mrisr_ray.config import load_config
from mrisr_ray.metrics import SubjectScore
from mrisr_ray.report.evaluate import LR_ROW, Evaluation, worse_than_input
from mrisr_ray.report.markdown import configuration_section, dc_verdict, results_table
from mrisr_ray.report.sources import ModelSource


def scores(psnr: list[float], ssim: list[float]) -> list[SubjectScore]:
    return [SubjectScore(f"s{i}", p, s, (p,), (s,)) for i, (p, s) in enumerate(zip(psnr, ssim, strict=True))]


def test_a_method_below_its_input_in_psnr_or_ssim_is_flagged():
    e = Evaluation(scores={LR_ROW: scores([36.0, 36.0], [0.92, 0.92]),
                           "GAN-CPCE": scores([37.0, 37.2], [0.93, 0.94]),  # better in both
                           "GAN-CIRCLE": scores([36.5, 36.7], [0.91, 0.91])},  # SSIM below
                   tv_weight=0.0)
    lines = worse_than_input(e)
    assert len(lines) == 1 and lines[0].startswith("GAN-CIRCLE is worse than its input: PSNR +0.60 dB")
    table = "\n".join(results_table(e))
    assert "GAN-CIRCLE — **worse than its input**" in table
    assert "GAN-CPCE — **worse" not in table and "(zero-filled) — **worse" not in table


def test_dc_verdict_states_both_changes_and_says_helps_only_when_both_rise():
    def verdict(dc_psnr: float, dc_ssim: float) -> str:
        e = Evaluation(scores={LR_ROW: scores([36.0], [0.92]), "GAN-CPCE": scores([37.0], [0.93]),
                               "GAN-CPCE +DC": scores([dc_psnr], [dc_ssim])}, tv_weight=0.0)
        return dc_verdict(e, "GAN-CPCE")

    assert verdict(37.5, 0.94) == "- GAN-CPCE: +DC helps: PSNR +0.50 dB, SSIM +0.0100 (mean over subjects)."
    assert "+DC is mixed: PSNR +0.50 dB, SSIM -0.0100" in verdict(37.5, 0.92)
    assert "+DC hurts" in verdict(36.5, 0.92)


def test_the_configuration_lists_lambda_p_only_with_a_perceptual_term():
    def configuration(perceptual: str) -> str:
        config = load_config("cpce", overrides=[f"loss.perceptual={perceptual}"])
        return "\n".join(configuration_section(ModelSource("cpce", config, [], "a fold ensemble")))

    assert "lambda_p 0.1, lambda_adv 1, lambda_l1 0;" in configuration("random_vgg")
    without = configuration("none")
    assert "lambda_adv 1, lambda_l1 0;" in without and "lambda_p" not in without
    assert "- **Perceptual loss opt-out: `none`**" in without
