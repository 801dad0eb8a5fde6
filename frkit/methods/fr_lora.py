"""FR-LoRA / FR-DoRA (Adhikari et al. 2025), Algorithm 1 step by step.

for each marketplace t:
  1. Stage I: fine-tune the base (adapters off) with EWC, Eq. 2                    (Alg. 1 line 4)
  2. Fisher F_t of the base on D_t, Eq. 3                                           (line 5)
  3. freeze the base, add LoRA/DoRA t on query/key/value                            (lines 6-7)
  4. Stage II: train LoRA t (+ head t) with L_task + beta/2 sum dW^2/(F_t+eps), Eq. 4  (line 8)
     (``fr_weighting``: the weights 1/(F_t+eps) as they are, or a mechanism control: uniform or shuffled per matrix)
  5. keep LoRA t                                                                    (line 9)
  6. recompute the Fisher with LoRA t active; carry it into the next Eq. 2          (line 10)
  7. decay the base learning rate                                                   (line 11)
after the last marketplace, optionally project older LoRAs onto the last one's subspaces, Eq. 5 (lines 14-16).
Marketplace t is scored with the final base + its own adapter and head.
"""

from __future__ import annotations

import torch

from frkit.core.lora_delta import effective_delta_w, lora_factors
from frkit.core.penalties import fr_inverse_fisher, fr_penalty_precomputed, fr_weights
from frkit.core.projection import project_lora_factors
from frkit.methods.base import count_trainable, fit_log
from frkit.methods.ewc import EwcBase, qkv_only
from frkit.methods.options import EwcOptions, FrOptions, LoraOptions
from frkit.methods.registry import register
from frkit.models.peft_adapters import adapter_parameters, add_adapter, freeze_all_but, lora_config
from frkit.train import cross_entropy_loss


@register
class FrLora(EwcBase):
    name = "fr_lora"
    option_groups = (EwcOptions, LoraOptions, FrOptions)
    tuned_lr, tuned_strength = "stage2_lr", "beta"  # Stage II, the paper's contribution (Stage I is EWC's)
    use_dora = False

    @classmethod
    def check_options(cls, cfg) -> list[str]:
        problems = super().check_options(cfg)
        if cfg.fr_weighting != "fisher" and cfg.beta == 0:  # a control of a penalty that is off: beta 0 again
            problems.append(
                f"key 'fr_weighting': {cfg.fr_weighting!r} reweights Eq. 4's penalty, which beta 0 turns off"
            )
        return problems

    def adapter_config(self):
        c = self.cfg
        return lora_config(c.lora_rank, c.lora_alpha, c.lora_dropout, c.lora_targets, use_dora=self.use_dora)

    def learn(self, step, marketplace, seen):
        name = marketplace.name
        stage1 = self.train_base_with_ewc(step, marketplace)  # line 4
        with self.adapters_off():  # line 5: the Fisher of the base just fine-tuned, not of base + an older adapter
            self.stage1_fisher = self.compute_fisher(marketplace, name)
        stage2, penalty = self.train_adapter(step, marketplace)  # lines 6-9
        fisher_with_lora = self.compute_fisher(marketplace, name)  # line 10 (adapter t active)
        self.carry_fisher(step, fisher_with_lora)
        self.learned.append(name)
        if self.cfg.projection and step == len(self.cfg.marketplaces) - 1:
            self.project_older_adapters()  # lines 14-16
        self.trainable_params = self.stage1_params + self.adapter_params  # head t trains in both stages: once
        return {
            "stage1": fit_log(stage1),
            "stage2": {**fit_log(stage2), "eq4_penalty": penalty},
            **fit_log(stage2),
            "stage1_lr": self.base_lr(step),
        }

    def train_base_with_ewc(self, step, marketplace):
        result = super().train_base_with_ewc(step, marketplace)
        self.stage1_params = self.trainable_params
        return result

    def train_adapter(self, step, marketplace):
        """Stage II, Eq. 4: only LoRA t and head t train; the base is frozen.

        Returns the fit and Eq. 4's penalty over the training steps (``mean`` over all of them, the same steps the
        logged ``train_loss`` averages over its epochs, so their difference is the task loss; ``last``: the final
        step's; ``fisher_below_eps``: the share of the adapted weights whose Fisher is below ``fr_eps``, where
        ``fr_eps`` (not the Fisher) sets the weight 1/(F+eps)), or None at beta 0, so that a reader can see whether
        the penalty or the task drove Stage II."""
        name = marketplace.name
        self.model.encoder = add_adapter(self.model.encoder, name, self.adapter_config())
        adapter = adapter_parameters(self.model.encoder, name)
        self.adapter_params = count_trainable(adapter)
        params = adapter + list(self.model.heads[name].parameters())
        freeze_all_but(self.model, params)
        task_loss = cross_entropy_loss(name)
        encoder, beta = self.model.encoder, self.cfg.beta
        inv_fisher, penalties, below_eps = None, [], None
        if beta > 0:
            targets = list(effective_delta_w(encoder, name))
            inv_fisher = fr_inverse_fisher(self.stage1_fisher, self.cfg.fr_eps, names=targets)  # once, not per step
            if self.cfg.fr_weighting != "fisher":  # a control: same total per matrix, other places (issue 29)
                inv_fisher = fr_weights(inv_fisher, self.cfg.fr_weighting, seed=self.cfg.seed + step)
            below_eps = sum(int((self.stage1_fisher[k] < self.cfg.fr_eps).sum()) for k in targets) / sum(
                self.stage1_fisher[k].numel() for k in targets
            )

        def loss(model, batch):
            value = task_loss(model, batch)
            if inv_fisher is not None:
                penalty = fr_penalty_precomputed(effective_delta_w(encoder, name), inv_fisher, beta)
                if torch.is_grad_enabled():  # a training step, not a later look at the loss
                    penalties.append(penalty.item())
                value = value + penalty
            return value

        c = self.cfg
        fit = self.train(
            self.model,
            params,
            marketplace,
            name,
            c.stage2_lr,
            step,
            loss_fn=loss,
            schedule=c.stage2_schedule,
            warmup_steps=c.stage2_warmup_steps,
        )
        summary = None
        if penalties:
            summary = {"mean": sum(penalties) / len(penalties), "last": penalties[-1], "fisher_below_eps": below_eps}
        return fit, summary

    @torch.no_grad()
    def project_older_adapters(self) -> None:
        """Eq. 5 for every older adapter, in place (DoRA magnitudes unchanged)."""
        encoder, last = self.model.encoder, self.learned[-1]
        latest = lora_factors(encoder, last)
        for name in self.learned[:-1]:
            older = lora_factors(encoder, name)
            for key, (a_new, b_new) in project_lora_factors(older, latest).items():
                a, b = older[key]
                a.copy_(a_new)
                b.copy_(b_new)

    def model_for(self, name):
        self.model.encoder.set_adapter(name)
        return self.model, name

    def rebuild_structure(self):
        for name in self.learned:
            self.add_head(self.model, name, rebuild=True)
            self.model.encoder = add_adapter(self.model.encoder, name, self.adapter_config())

    def artifacts(self):
        out = super().artifacts()
        out["lora_factors"] = {
            f"{k}|{part}": t
            for k, (a, b) in lora_factors(self.model.encoder, self.learned[-1]).items()
            for part, t in (("A", a), ("B", b))
        }
        return out


@register
class FrDora(FrLora):
    name = "fr_dora"
    use_dora = True


__all__ = ["FrLora", "FrDora", "qkv_only"]
