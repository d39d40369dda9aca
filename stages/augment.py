"""Stage augment: the training pool of originals and variants (reads params: augment)."""
from fashionclf.core import params
from fashionclf.core.cli import stage_args, stage_main
from fashionclf.data.augment import augment, describe, sample_grid
from fashionclf.report.plotting import plot_image_grid


def main():
    args = stage_args(__doc__, "trainval", "out", "samples-png")
    p = params.load("augment")
    table, images = augment(p, args.trainval, args.out)
    plot_image_grid(sample_grid(images, table, p), describe(p), args.samples_png)
    print(f"augment: {len(table)} images from {table['group'].nunique()} sources")


if __name__ == "__main__":
    stage_main(main)
