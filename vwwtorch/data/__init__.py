"""Datasets: the on-disk format, the built-in scenes, COCO -> Visual Wake Words, image folders, and the
Lightning data module with slim's augmentation."""
