; Script-Fu for GIMP 2.10 batch mode: load a file, write its layer tree as tab-separated
; lines (depth, name, mode, opacity, visible, is-group) and save the flattened image as PNG.
(define (ls-dump-layers layers port depth)
  (for-each
    (lambda (l)
      (display (string-append "LAYER\t" (number->string depth) "\t" (car (gimp-item-get-name l)) "\t"
                 (number->string (car (gimp-layer-get-mode l))) "\t"
                 (number->string (car (gimp-layer-get-opacity l))) "\t"
                 (number->string (car (gimp-item-get-visible l))) "\t"
                 (number->string (car (gimp-item-is-group l))) "\n") port)
      (if (= (car (gimp-item-is-group l)) 1)
          (ls-dump-layers (vector->list (cadr (gimp-item-get-children l))) port (+ depth 1))))
    layers))
(define (ls-probe in-file out-txt out-png)
  (let* ((image (car (gimp-file-load RUN-NONINTERACTIVE in-file in-file)))
         (port (open-output-file out-txt)))
    (display (string-append "IMAGE\t" (number->string (car (gimp-image-width image))) "\t"
               (number->string (car (gimp-image-height image))) "\n") port)
    (ls-dump-layers (vector->list (cadr (gimp-image-get-layers image))) port 0)
    (close-output-port port)
    (let ((merged (car (gimp-image-merge-visible-layers image CLIP-TO-IMAGE))))
      (file-png-save RUN-NONINTERACTIVE image merged out-png out-png 0 9 0 0 0 0 0))))
