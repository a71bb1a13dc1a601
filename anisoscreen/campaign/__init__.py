"""Closed-loop discovery campaigns: acquisition, DFT in the loop, fine-tuning on DFT labels.

- :mod:`~anisoscreen.campaign.acquisition`: strategies choosing the next batch from ensemble
  predictions, with a diversity guard.
- :mod:`~anisoscreen.campaign.finetune`: ValidationDocs -> labelled entries; warm-start
  fine-tuning of every ensemble member, saved as a new model version.
- :mod:`~anisoscreen.campaign.guard`: one writer per campaign (step lock, compare-and-set
  revision) and safe names; :mod:`~anisoscreen.campaign.cache`: the atomic values cache;
  :mod:`~anisoscreen.campaign.local_run`: in-process validations, failures recorded.
- :mod:`~anisoscreen.campaign.rounds`: one resumable round (select, submit, collect, fine-tune,
  re-predict) on a :class:`~anisoscreen.schemas.CampaignDoc`.
- :mod:`~anisoscreen.campaign.simulate`: the same loop offline against an oracle file.
"""
