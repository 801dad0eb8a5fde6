"""Attention Distillation over AdapterFusion with translation (seed 2, sections 4.2-4.3, Algorithm 1).

step 1:  adapter 1 + head 1 on D_1 (Eq. 6); M_1 = base + adapter 1.
step t:  1. adapter t + head t on D_t, older adapters and base frozen (Eq. 6)
         2. translate a seeded ``translate_fraction`` of D_t's training rows into every older language (T_1..T_{t-1})
         3. a freshly initialised fusion Psi_t over adapters 1..t; everything else frozen
         4. batches of D_t: task loss L_t (head t); translated batches: KL(Omega_{t-1} || omega_t) of Eq. 9
            between the teacher M_{t-1} (fusion t-1 over 1..t-1, or adapter 1 alone at t = 2; eval mode, no grad)
            and the student's fusion scores over the old adapters (Eq. 10-11). omega_t is the plain slice of
            the student's scores, not renormalised, as the paper defines it (``distill_renormalise`` switches).
            With ``translate_fraction: 0`` (section 4.2) every D_t batch gets both terms. Every batch also gets
            AdapterHub's fusion value regulariser 0.01 * sum_l ||I - V_l||^2 (its default fusion; switch:
            ``fusion_value_regularization``).
Scoring after step k: every marketplace t with M_k (fusion k over adapters 1..k) and its own head t, which
was trained with its adapter in step 1 and stays frozen while fusions train (Eq. 7: only Psi_t is trained).

Translation: ``translator: parallel`` looks the same pair id up in the older language's side of the parallel
corpus (``Marketplace.parallel_corpus``): for PAWS-X and STS-B this is the human / release translation of D_t's
own pairs, the shortcut for an MT system. With ``parallel_pairs: disjoint`` those pairs are in no older
marketplace's training share, so this is translation of new data, as the paper has it; with ``shared`` they
are also the older marketplaces' own (unlabelled here) training pairs, a mild form of replay.
``translator: marian`` runs Opus-MT (needs the Hub or local models and sentencepiece) and caches translations on disk.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from frkit.core.distill import attention_distillation_loss, total_loss
from frkit.data.translate import CachedTranslator, MarianTranslator, ParallelCorpusTranslator, translate_fraction
from frkit.methods.adapter import AdapterMethodBase
from frkit.methods.base import fit_log
from frkit.methods.registry import register
from frkit.paths import resolve
from frkit.train import cross_entropy_loss

NEW, TRANSLATED = "new", "translated"


@register
class AttentionDistillation(AdapterMethodBase):
    name = "attention_distillation"
    tuned_lr, tuned_strength = "fusion_lr", "distill_weight"  # the fusion stage and Eq. 10's weight: what AD adds

    @classmethod
    def looks_up_translations(cls, cfg) -> bool:
        return cfg.translator == "parallel" and cfg.translate_fraction > 0

    def fusion_name(self, k: int) -> str:
        return f"fusion_{k}"

    def teacher_setup(self, step: int) -> dict:
        """M_{t-1}: the single first adapter at t = 2, else the previous fusion."""
        if step == 1:
            return {"adapters": [self.learned[0]]}
        return {"fusion": self.fusion_name(step - 1)}

    def translator(self, seen):
        if self.cfg.translator == "parallel":  # the corpus's own translation of D_t's pairs into each older language
            if seen[-1].translations is not None:  # data_source mixed: D_t's own corpus, whatever the older ones were
                return ParallelCorpusTranslator(seen[-1].translations)
            tables = {
                m.language: m.parallel_corpus
                if m.parallel_corpus is not None
                else pd.concat([m.train, m.validation], ignore_index=True)
                for m in seen[:-1]
            }
            return ParallelCorpusTranslator(tables)
        cache = resolve(self.cfg.translation_cache or Path(self.cfg.output_dir) / "translation_cache")
        return CachedTranslator(MarianTranslator(), cache)

    def learn(self, step, marketplace, seen):
        name = marketplace.name
        self.probe_tables = {m.name: m.validation.head(32) for m in seen}  # for artifacts(): a few rows each
        stage1 = self.train_language_adapter(step, marketplace)  # Eq. 6
        log = {"adapter": fit_log(stage1)}
        adapter_params = self.trainable_params
        if step == 0:
            self.learned.append(name)
            return {**log, **fit_log(stage1)}
        translated = translate_fraction(
            marketplace.train,
            self.cfg.translate_fraction,
            self.cfg.seed + step,
            [m.language for m in seen[:-1]],
            self.translator(seen),
            source_lang=marketplace.language,
        )
        fusion = self.fusion_name(step)
        self.stack.add_fusion(fusion, [m.name for m in seen])  # fresh Psi_t over adapters 1..t
        self.stack.set_active(fusion=fusion)
        self.stack.freeze_all_but(fusions=[fusion])
        for p in self.model.heads.parameters():
            p.requires_grad_(False)
        params = self.stack.fusion_parameters(fusion)
        tables = {NEW: marketplace.train}
        translated_rows = [df for df in translated.values() if len(df)]
        if translated_rows:
            tables[TRANSLATED] = pd.concat(translated_rows, ignore_index=True)
        loss = self.with_fusion_regularization(
            self.distillation_loss(step, name, with_translation=bool(translated_rows)), fusion
        )
        stage2 = self.train(
            self.model,
            params,
            marketplace,
            name,
            self.cfg.fusion_lr,
            step,
            loss_fn=loss,
            batches=self.mixed_batches(tables, step),
            stage="fusion",
        )
        self.trainable_params += adapter_params
        self.learned.append(name)
        log.update(
            {
                "fusion": fit_log(stage2),
                **fit_log(stage2),
                "translated_rows": {lang: len(df) for lang, df in translated.items()},
            }
        )
        return log

    def distillation_loss(self, step: int, head: str, with_translation: bool):
        """Eq. 10-11: task loss on D_t batches, Eq. 9 KL on translated batches (both on D_t without translation)."""
        task = cross_entropy_loss(head)
        teacher_setup = self.teacher_setup(step)
        stack, weight, renorm = self.stack, self.cfg.distill_weight, self.cfg.distill_renormalise
        reduction = self.cfg.distill_reduction

        def ad_loss(model, batch):
            inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch}
            with stack.teacher(**teacher_setup):
                model.encoder(**inputs)
                teacher_scores = stack.attention_scores()
            with stack.capturing():
                logits = model(**batch, head=head)
                student_scores = stack.attention_scores()
            kl = attention_distillation_loss(teacher_scores, student_scores, batch["attention_mask"], renorm, reduction)
            return kl, logits

        def loss(model, batch):  # Eq. 10 (total_loss) with Eq. 11's split of the batches
            if batch.get("source") == TRANSLATED:
                return total_loss(ad_loss=ad_loss(model, batch)[0], ad_weight=weight)
            if with_translation:
                return total_loss(task_loss=task(model, batch))
            kl, logits = ad_loss(model, batch)
            return total_loss(torch.nn.functional.cross_entropy(logits.float(), batch["labels"]), kl, weight)

        return loss

    def model_for(self, name):
        k = len(self.learned) - 1
        if k == 0:
            self.stack.set_active([self.learned[0]])
        else:
            self.stack.set_active(fusion=self.fusion_name(k))
        return self.model, name

    def artifacts(self):
        """Mean fusion attention per layer and adapter on each seen marketplace's validation rows."""
        if len(self.learned) < 2:
            return {}
        return {"fusion_attention": {m: self.mean_attention_per_layer(t) for m, t in self.probe_tables.items()}}
